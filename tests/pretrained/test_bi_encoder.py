"""The bi-encoder (--pair-encoder bi): the cosine op and the model's backward pass
the float64 gradient check; the model reads a cross-encoder's pair input and
scores it as the zero-shot sentence embeddings do (each text alone). The
cross-encoder with a cosine (--pair-encoder cross-cosine): its gradient check,
its two texts' tokens, a run that trains, saves and predicts."""

import numpy as np
import pytest

from numformer import get_backend, set_backend
from numformer.gradcheck import check_module, check_op
from numformer.nn import Dropout, no_grad
from numformer.ops.similarity import cosine_backward, cosine_forward
from numformer.pretrained import BertBiEncoder, BertCrossCosine, load_bert
from numformer.pretrained.sentence import cosine_similarity, sentence_embeddings


def test_cosine_op_gradcheck_value_and_zero_rows():
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    check_op(cosine_forward, cosine_backward, dict(u=u, v=v), ["u", "v"]).assert_ok()
    c, _ = cosine_forward(u, v)
    want = [a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(u, v)]
    np.testing.assert_allclose(c, want, rtol=1e-12)
    c, _ = cosine_forward(u, 3.0 * u)
    np.testing.assert_allclose(c, 1.0, rtol=1e-12)
    z = np.zeros((1, 7))
    c, cache = cosine_forward(z, v[:1])
    du, dv = cosine_backward(np.ones(1), cache)
    assert c[0] == 0.0 and np.isfinite(du).all() and np.isfinite(dv).all()
    with pytest.raises(ValueError, match=r"v: expected shape \(5, 7\)"):
        cosine_forward(u, v[:3])
    with pytest.raises(ValueError, match="v: expected dtype float64"):
        cosine_forward(u, v.astype(np.float32))


SENTENCE_PAIRS = [("A man is playing a guitar.", "A man plays the guitar."),
                  ("A woman is slicing an onion.", "Two dogs run on the beach in the sun."),
                  ("Hi", "A much longer second sentence than the first one, with many words.")]


def _pairs(tok, pairs):
    """The cross-encoder's batch of pairs: ids, key mask, token types (B, T)."""
    from numformer.data.batching import collate
    enc = [tok.encode_pair(a, b, max_length=64) for a, b in pairs]
    ids, km = collate([np.asarray(i) for i, _ in enc], tok.pad_id)
    tt, _ = collate([np.asarray(t) for _, t in enc], 0)
    return ids, km, tt


@pytest.fixture
def numpy_backend():
    previous = get_backend()
    set_backend("numpy")
    yield
    set_backend(previous)


@pytest.mark.parametrize("model_class, pooling", [(BertBiEncoder, "mean"),
                                                   (BertBiEncoder, "cls"),
                                                   (BertCrossCosine, None)])
def test_pair_cosine_models_gradcheck(tiny_bert_dir, numpy_backend, model_class, pooling):
    """The bi-encoder and the cross-encoder with a cosine: every weight's gradient,
    token types (the cross-encoder reads them) included."""
    model, tok = load_bert(tiny_bert_dir, dtype=np.float64)
    m = model_class(model, pooling=pooling) if pooling else model_class(model)
    for d in m.modules():
        if isinstance(d, Dropout):
            d.p = 0.0
    m.train()
    ids, km, tt = _pairs(tok, [("the cat sat", "on the mat"), ("a good movie !", "dog"),
                               ("dog", "the cat sat on the mat")])
    report = check_module(m, ids, km, token_type_ids=tt, title=f"{model_class.__name__}({pooling})")
    assert {"bert.encoder.blocks.1.attn.Wqkv", "bert.tok.weight"} <= {r.name for r in report.rows}
    report.assert_ok()
    assert np.abs(m.bert.tok.weight.grad).max() > 1e-3  # the check has teeth
    if model_class is BertCrossCosine:
        assert np.abs(m.bert.type.weight.grad).max() > 1e-3


def test_bi_encoder_is_the_cosine_of_sentence_embeddings(real_bert):
    model, tok = real_bert
    pairs = SENTENCE_PAIRS
    ids, km, tt = _pairs(tok, pairs)
    bi = BertBiEncoder(model)
    bi.eval()
    with no_grad():
        got = bi(ids, km, token_type_ids=tt)[:, 0]
    a = sentence_embeddings(model, tok, [p[0] for p in pairs])
    b = sentence_embeddings(model, tok, [p[1] for p in pairs])
    np.testing.assert_allclose(got, cosine_similarity(a, b), atol=2e-5)
    assert got[0] > 0.8 > got[1]  # similar and dissimilar pairs, apart
    with pytest.raises(ValueError, match="token_type_ids: a bi-encoder reads text pairs"):
        bi(ids, km)
    with pytest.raises(ValueError, match="token_type_ids: row 0 has no second text"):
        bi(ids, km, token_type_ids=np.zeros_like(tt))


def test_a_bi_encoder_run_trains_saves_and_predicts_a_symmetric_score(real_model_dir, tmp_path,
                                                                      capsys):
    import json
    from numformer.cli import main
    from numformer.train import TrainConfig, train
    from numformer.train.load import load_trained
    from numformer.train.tasks import make_task
    from numformer.testing import overlap_pairs_tsv
    f = overlap_pairs_tsv(tmp_path / "pairs.tsv",
                          ["cat", "dog", "car", "tree", "house", "river", "book", "song"], 48,
                          seed=3)
    out = tmp_path / "bi"
    cfg = TrainConfig.for_task("regress", data=str(f), out=str(out), init="minilm",
                               pair_encoder="bi", max_len=16, batch_size=8, max_steps=3,
                               warmup=1, lr=2e-5, progress=False)
    task = make_task(cfg, log=lambda *a: None)
    assert type(task.model).__name__ == "BertBiEncoder"
    assert task.train_labels.min() == 0.0 and task.train_labels.max() == 1.0  # rescaled
    ids, km, tt, y = b = task.train_batches(0)[0]
    before = task.model.bert.tok.weight.value.copy()
    task.model.zero_grad()
    task.loss_and_backward(b)
    assert np.abs(task.model.bert.tok.weight.grad).max() > 0  # the encoder is trained
    np.testing.assert_array_equal(task.model.bert.tok.weight.value, before)
    summary = train(cfg, log=lambda *a: None)
    assert summary["metrics"]["dev_spearman"] > 0.3  # MiniLM's cosine already ranks these
    trained = load_trained(out)
    assert type(trained.model).__name__ == "BertBiEncoder"
    assert json.loads((out / "train_config.json").read_text())["pair_encoder"] == "bi"
    assert main(["predict", "-c", str(out), "cat dog car", "cat dog car",
                 "cat dog car", "tree river song", "tree river song", "cat dog car"]) == 0
    s = [float(line.split()[0]) for line in capsys.readouterr().out.strip().splitlines()]
    assert s[0] == pytest.approx(5.0, abs=1e-4)  # the same text twice: cosine 1, the top score
    assert s[1] == pytest.approx(s[2], abs=1e-5) and s[1] < 4.0  # symmetric, and lower
    one = tmp_path / "one.csv"
    one.write_text("text,score\n" + "".join(f"w{i} w{i + 1},{i % 3}\n" for i in range(20)),
                   encoding="utf-8")
    from numformer.train.settings import ConfigError
    with pytest.raises(ConfigError, match="pair_encoder: 'bi' scores text pairs; this data has "
                                          "one text an example"):
        make_task(TrainConfig.for_task("regress", data=str(one), out=str(tmp_path / "x"),
                                       init="minilm", pair_encoder="bi"), log=lambda *a: None)


def test_init_from_a_bert_run_takes_its_encoder_and_vocabulary_not_its_head(tiny_bert_dir,
                                                                            tmp_path):
    """--init RUN, RUN a fine-tuned BERT (here a bi-encoder): a cross-encoder, a
    bi-encoder and a classifier start from the run's trained encoder, not from the
    BERT it started from, and each gets its own new head."""
    from numformer.pretrained import BertClassifier
    from numformer.testing import overlap_pairs_tsv
    from numformer.train import TrainConfig, train
    from numformer.train.load import load_trained
    from numformer.train.tasks import init_kind, make_task
    words = ["cat", "dog", "mat", "movie", "good", "bad", "run", "sat"]
    f = overlap_pairs_tsv(tmp_path / "pairs.tsv", words, 40, seed=1)
    run = tmp_path / "bi"
    train(TrainConfig.for_task("regress", data=str(f), out=str(run), init=str(tiny_bert_dir),
                               pair_encoder="bi", max_len=10, batch_size=8, max_steps=4,
                               warmup=1, lr=0.05, progress=False), log=lambda *a: None)
    trained = load_trained(run).model.bert.state_dict()
    original = load_bert(tiny_bert_dir)[0].state_dict()
    assert init_kind(str(run)) == "bert" and init_kind(str(run / "checkpoint.npz")) == "bert"
    assert not np.allclose(trained["tok.weight"], original["tok.weight"])  # it was trained
    for encoder in ("cross", "bi", "cross-cosine"):
        cfg = TrainConfig.for_task("regress", data=str(f), out=str(tmp_path / encoder),
                                   init=str(run), pair_encoder=encoder, max_len=10,
                                   progress=False)
        task = make_task(cfg, log=lambda *a: None)
        assert type(task.model).__name__ == {"cross": "BertClassifier", "bi": "BertBiEncoder",
                                             "cross-cosine": "BertCrossCosine"}[encoder]
        got = task.model.bert.state_dict()
        assert set(got) == set(trained)
        for k in trained:
            np.testing.assert_array_equal(got[k], trained[k], err_msg=k)
    labels = tmp_path / "labels.csv"
    labels.write_text("text,label\n" + "".join(f"{words[i % 8]} {words[(i + 3) % 8]},"
                                               f"{'ab'[i % 2]}\n" for i in range(30)),
                      encoding="utf-8")
    task = make_task(TrainConfig.for_task("classify", data=str(labels), out=str(tmp_path / "c"),
                                          init=str(run), max_len=10, progress=False),
                     log=lambda *a: None)
    assert isinstance(task.model, BertClassifier) and task.model.fc.weight.shape == (6, 2)
    np.testing.assert_array_equal(task.model.bert.state_dict()["tok.weight"],
                                  trained["tok.weight"])
    assert task.tokenizer.vocab == load_trained(run).tokenizer.vocab


def test_cross_cosine_pools_each_text_of_the_joint_encoding(real_bert):
    """The two vectors are the means of [CLS] a [SEP] and of b [SEP], found here by the
    first [SEP] of each row (not by the token types the model reads), over the hidden
    states of the pair encoded as one sequence."""
    model, tok = real_bert
    pairs = SENTENCE_PAIRS
    ids, km, tt = _pairs(tok, pairs)
    cc = BertCrossCosine(model)
    cc.eval()
    with no_grad():
        got = cc(ids, km, token_type_ids=tt)[:, 0]
        h = model(ids, km, tt)  # (B, T, C)
    for i in range(len(pairs)):
        sep = int(np.flatnonzero(ids[i] == tok.sep_id)[0])
        n = int(km[i].sum())
        u, v = h[i, :sep + 1].mean(0), h[i, sep + 1:n].mean(0)
        want = u @ v / np.linalg.norm(u) / np.linalg.norm(v)
        assert got[i] == pytest.approx(want, abs=1e-5)
    # each text attends to the other: the first text's vector depends on the second text
    other, km2, tt2 = _pairs(tok, [(pairs[0][0], pairs[1][1])])
    with no_grad():
        h2 = model(other, km2, tt2)
    sep = int(np.flatnonzero(ids[0] == tok.sep_id)[0])
    assert np.abs(h2[0, :sep + 1].mean(0) - h[0, :sep + 1].mean(0)).max() > 1e-3
    with pytest.raises(ValueError, match="token_type_ids: a cross-encoder with a cosine reads"):
        cc(ids, km)
    with pytest.raises(ValueError, match="token_type_ids: row 0 has no second text"):
        cc(ids, km, token_type_ids=np.zeros_like(tt))


def test_a_cross_cosine_run_trains_saves_and_predicts(real_model_dir, tmp_path, capsys):
    from numformer.cli import main
    from numformer.testing import overlap_pairs_tsv
    from numformer.train import TrainConfig, train
    from numformer.train.load import load_trained
    from numformer.train.tasks import make_task
    f = overlap_pairs_tsv(tmp_path / "pairs.tsv",
                          ["cat", "dog", "car", "tree", "house", "river", "book", "song"], 48,
                          seed=3)
    out = tmp_path / "cc"
    cfg = TrainConfig.for_task("regress", data=str(f), out=str(out), init="minilm",
                               pair_encoder="cross-cosine", pair_swap=True, max_len=16,
                               batch_size=8, max_steps=3, warmup=1, lr=2e-5, progress=False)
    task = make_task(cfg, log=lambda *a: None)
    assert type(task.model).__name__ == "BertCrossCosine"
    assert task.train_labels.min() == 0.0 and task.train_labels.max() == 1.0  # rescaled
    summary = train(cfg, log=lambda *a: None)
    trained = load_trained(out)
    assert type(trained.model).__name__ == "BertCrossCosine"
    assert main(["predict", "-c", str(out), "cat dog car", "cat dog car", "tree river song",
                 "cat dog car"]) == 0
    preds = [float(line.split()[0]) for line in capsys.readouterr().out.strip().splitlines()]
    assert preds[0] > preds[1]  # the same text twice scores above two different texts
    assert summary["metrics"]["dev_spearman"] > 0.3


@pytest.mark.parametrize("encoder", ["bi", "cross-cosine"])
def test_cosent_trains_the_cosines_toward_the_order_of_the_scores(tiny_bert_dir, tmp_path,
                                                                 numpy_backend, encoder,
                                                                 monkeypatch):
    """--regress-loss cosent: the task's loss is CoSENT on the model's cosines, and a
    small step along its gradient lowers it on the same batch (the loss, the
    model's backward and the task's wiring agree in sign and size)."""
    from numformer import distributed as dist
    from numformer import ops
    from numformer.nn import CoSENTLoss
    from numformer.testing import overlap_pairs_tsv
    from numformer.train import TrainConfig
    from numformer.train.settings import ConfigError
    from numformer.train.tasks import make_task
    f = overlap_pairs_tsv(tmp_path / "pairs.tsv",
                          ["cat", "dog", "mat", "movie", "good", "bad", "run", "sat"], 40, seed=2)
    cfg = TrainConfig.for_task("regress", data=str(f), out=str(tmp_path / "run"),
                               init=str(tiny_bert_dir), pair_encoder=encoder,
                               regress_loss="cosent", max_len=10, batch_size=16, dropout=0.0,
                               progress=False)
    task = make_task(cfg, log=lambda *a: None)
    assert isinstance(task.loss, CoSENTLoss)
    for d in task.model.modules():  # no dropout: the same batch gives the same cosines
        if isinstance(d, Dropout):
            d.p = 0.0
        elif isinstance(getattr(d, "dropout", None), float):  # attention probabilities
            d.dropout = 0.0
    b = task.train_batches(0)[0]
    task.model.zero_grad()
    loss0, _ = task.loss_and_backward(b)
    with no_grad():
        cos = task.model(b[0], b[1], b[2])  # (B, 1)
    assert loss0 == pytest.approx(float(ops.losses.cosent_forward(cos, b[3][:, None])[0]),
                                  rel=1e-12)
    params = list(task.model.parameters())
    g2 = sum(float((p.grad ** 2).sum()) for p in params)
    assert g2 > 0
    step = 1e-3 / np.sqrt(g2)
    for p in params:
        p.value -= step * p.grad
    with no_grad():
        loss1 = float(task.loss(task.model(b[0], b[1], b[2]), b[3][:, None].astype(float)))
    assert loss1 < loss0 - 0.5 * step * g2  # first order: a fall of about step * |g|^2
    monkeypatch.setattr(dist, "world", lambda: type("W", (), {"size": 2})())
    with pytest.raises(ConfigError, match="regress_loss: 'cosent' ranks the pairs of the whole "
                                          "batch, which 2 MPI ranks would split"):
        make_task(cfg, log=lambda *a: None)


def test_a_cosent_run_maps_its_cosines_by_a_line_fitted_on_training_pairs(tiny_bert_dir,
                                                                          tmp_path, capsys):
    """CoSENT trains the cosines' order only: the run fits a least-squares line from
    cosine to score on training pairs, which beats the label-range map on those
    pairs, is saved in the checkpoint, and is what eval and predict use."""
    from numformer.cli import main
    from numformer.testing import overlap_pairs_tsv
    from numformer.train import TrainConfig, train
    from numformer.train.load import load_trained
    from numformer.train.regress_task import to_score
    f = overlap_pairs_tsv(tmp_path / "pairs.tsv",
                          ["cat", "dog", "mat", "movie", "good", "bad", "run", "sat"], 60, seed=4)
    out = tmp_path / "cosent"
    train(TrainConfig.for_task("regress", data=str(f), out=str(out), init=str(tiny_bert_dir),
                               pair_encoder="bi", regress_loss="cosent", max_len=10,
                               batch_size=16, max_steps=6, warmup=1, lr=0.02, keep_best="",
                               progress=False), log=lambda *a: None)
    run = load_trained(out)
    a, b = run.meta["score_line"]
    assert b != 0 and (a, b) != (run.meta["label_low"],
                                 run.meta["label_high"] - run.meta["label_low"])
    # on the training pairs, the line's squared error is below the label-range map's
    from numformer.train.tasks import make_task
    task = make_task(TrainConfig.for_task("regress", data=str(f), out=str(tmp_path / "t"),
                                          init=str(out), pair_encoder="bi",
                                          regress_loss="cosent", max_len=10, progress=False),
                     log=lambda *a: None)
    task.model.load_state_dict(run.model.state_dict())
    task.model.eval()
    with no_grad():
        c = task.outputs_ids(task.train_ids, task.train_types)[:, 0]
        line = task.fit_score_line()
    assert line == pytest.approx((a, b), rel=1e-9)  # the same sample, the same weights
    y = task.label_low + (task.label_high - task.label_low) * np.asarray(task.train_labels)
    mse_line = np.mean((to_score(c, run.meta) - y) ** 2)
    mse_range = np.mean((task.label_low + (task.label_high - task.label_low) * c - y) ** 2)
    assert mse_line < mse_range
    # predict maps the loaded run's cosine through the checkpoint's line
    ids, types = task.encode(["cat dog mat", "good movie"], ["dog mat run", "bad movie"])
    with no_grad():
        c = task.outputs_ids(ids, types)[:, 0]
    capsys.readouterr()
    assert main(["predict", "-c", str(out), "cat dog mat", "dog mat run", "good movie",
                 "bad movie"]) == 0
    got = [float(line.split()[0]) for line in capsys.readouterr().out.strip().splitlines()]
    by_range = task.label_low + (task.label_high - task.label_low) * c
    assert np.abs(a + b * c - by_range).min() > 0.01  # the two maps tell apart here
    assert got == pytest.approx(a + b * c, abs=1e-4)
