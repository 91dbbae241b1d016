"""Training on a user's own data: `numformer train classify --data my.csv`, folders,
text pairs (token types 0/1 for both tokenizers), and regression (MSE loss,
Pearson/Spearman)."""

import json

import numpy as np
import pytest

from numformer import nn, ops
from numformer.cli import main
from numformer.data.tokenizers import WordTokenizer
from numformer.gradcheck import check_op
from numformer.train import TrainConfig, train
from numformer.train import metrics as M
from numformer.testing import overlap_pairs_tsv
from numformer.train.task_base import encode_pair
from numformer.train.tasks import make_task

TINY = dict(dim=16, n_heads=2, n_layers=1, d_ff=32, batch_size=16, warmup=2, progress=False,
            epochs=1, max_len=16)
FLAGS = ["--dim", "16", "--n-heads", "2", "--n-layers", "1", "--d-ff", "32", "--batch-size",
         "16", "--warmup", "2", "--no-progress", "--epochs", "1", "--max-len", "16"]
POS, NEG = ["good", "great", "fine", "lovely"], ["bad", "awful", "dull", "poor"]


def quiet(*a, **k):
    pass


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    p = tmp_path_factory.mktemp("csv") / "my.csv"
    lines = ["review,sentiment"]
    for i in range(80):
        lab = "pos" if i % 2 else "neg"
        words = rng.choice(POS if lab == "pos" else NEG, 3)
        lines.append(f'"{" ".join(words)}, film {i}",{lab}')
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("reviews")
    rng = np.random.default_rng(1)
    for lab, words in (("neg", NEG), ("pos", POS)):
        (root / lab).mkdir()
        for i in range(30):
            (root / lab / f"{i}.txt").write_text(" ".join(rng.choice(words, 4)),
                                                 encoding="utf-8")
    return root


def test_cli_trains_on_a_csv_and_says_what_it_chose(csv_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "classify", "--data", str(csv_file), "--out", str(out), *FLAGS]) == 0
    text = capsys.readouterr().out
    assert "text column 'review' (by its name)" in text
    assert "label column 'sentiment' (by its name)" in text
    assert "classes (2, sorted): neg, pos" in text
    assert "dev and test carved from train (seed 0, 0.1 of it each): dev 8, test 8, train 64" \
        in text
    assert "train: 64 examples; neg " in text and "vocabulary " in text
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["metrics"]) == {"dev_loss", "dev_accuracy", "test_loss", "test_accuracy"}
    assert main(["predict", "-c", str(out), "good great film", "awful dull"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.split()[0] in ("neg", "pos") for line in lines)
    assert all("neg: " in line and "pos: " in line for line in lines)
    assert main(["eval", str(out)]) == 0
    metrics = json.loads(capsys.readouterr().out.split("}")[0] + "}")
    assert metrics["test_accuracy"] == pytest.approx(summary["metrics"]["test_accuracy"])


def test_train_cfg_on_a_folder_learns(folder, tmp_path):
    cfg = TrainConfig.for_task("classify", data=str(folder), out=str(tmp_path / "f"),
                               **dict(TINY, epochs=6, lr=3e-3), eval_fraction=0.2)
    assert cfg.dataset == "file"  # chosen by --data without --dataset
    summary = train(cfg, log=quiet)
    assert summary["metrics"]["dev_accuracy"] >= 0.9  # the two classes share no word
    hist = json.loads((tmp_path / "f" / "history.json").read_text())
    assert hist["train_loss"][-1] < hist["train_loss"][0]


def test_file_settings_are_checked_before_any_data_is_read(csv_file, tmp_path, capsys):
    cases = [
        (["classify", "--dataset", "sst2", "--data", str(tmp_path), "--dev", str(csv_file)],
         "--dev: read only when --dataset is 'file' (a CSV, TSV, JSON-lines file or a "
         "folder); --dataset is 'sst2'"),
        (["classify", "--data", str(csv_file), "--train", str(csv_file)],
         "--train: give the training file once, as --data or here; got both"),
        (["regress"], "--data: the regress task reads a CSV, TSV or JSON-lines file or a folder of class "
         "folders; none given (give it here, or as --train)"),
        (["classify", "--data", str(csv_file), "--test", str(tmp_path / "nope.csv")],
         "--test: no such file or folder"),
    ]
    for args, message in cases:
        assert main(["train", *args, "--out", str(tmp_path / "o")]) == 2, args
        assert message in capsys.readouterr().err, args
    with pytest.raises(SystemExit) as e:  # a fixed set of values: refused by the parser
        main(["train", "classify", "--data", str(csv_file), "--format", "xml", "--out",
              str(tmp_path / "o")])
    assert e.value.code == 2
    assert ("argument --format: invalid choice: 'xml' (choose from 'auto', 'csv', 'tsv', "
            "'jsonl')") in capsys.readouterr().err


def test_bad_data_stops_the_run_naming_file_and_line(tmp_path, capsys):
    p = tmp_path / "bad.csv"
    p.write_text("text,label\nfine,1\n,0\n", encoding="utf-8")
    assert main(["train", "classify", "--data", str(p), "--out", str(tmp_path / "o"),
                 *FLAGS]) == 2
    assert "bad.csv, line 3: empty text in column 'text'" in capsys.readouterr().err


# text pairs --------------------------------------------------------------------------

def test_pair_encoding_numformer_tokenizer():
    tok = WordTokenizer.build(["a b c d e f"])
    ids, types = encode_pair(tok, "a b", "c d e", max_len=32)
    ab, cde = tok.encode("a b").tolist(), tok.encode("c d e").tolist()
    assert ids.tolist() == [tok.cls_id, *ab, tok.sep_id, *cde]
    assert types.tolist() == [0, 0, 0, 0, 1, 1, 1]
    ids, types = encode_pair(tok, "a b c", "d e f", max_len=5)  # the longer text cut first
    assert ids.tolist() == [tok.cls_id, *tok.encode("a b").tolist(), tok.sep_id,
                            *tok.encode("d").tolist()]
    assert types.tolist() == [0, 0, 0, 0, 1]


def test_pair_encoding_wordpiece_matches_hugging_face():
    pytest.importorskip("safetensors")
    transformers = pytest.importorskip("transformers")
    from numformer.pretrained.sentence import default_model_path
    from numformer.pretrained.wordpiece import WordPieceTokenizer
    try:
        folder = default_model_path()
    except FileNotFoundError:
        pytest.skip("all-MiniLM-L6-v2 not installed")
    mine = WordPieceTokenizer.from_pretrained(folder)
    hf = transformers.AutoTokenizer.from_pretrained(str(folder))
    for a, b, n in [("A man is playing a large flute.", "A man plays the flute!", 64),
                    ("one two three four five six seven eight nine ten", "x y", 8),
                    ("x y", "Unbelievable, tokenization of longer words works.", 9)]:
        ids, types = mine.encode_pair(a, b, max_length=n)
        ref = hf(a, b, truncation="longest_first", max_length=n)
        assert ids == ref["input_ids"], (a, b)
        assert types == ref["token_type_ids"], (a, b)
        assert types[:ids.index(mine.sep_id) + 1] == [0] * (ids.index(mine.sep_id) + 1)


@pytest.fixture(scope="module")
def pair_file(tmp_path_factory):
    """Pairs scored by how many of b's 3 words are a's: a similarity to learn."""
    return overlap_pairs_tsv(tmp_path_factory.mktemp("pairs") / "pairs.tsv",
                             [f"w{i}" for i in range(12)], 160, seed=2)


def test_pairs_reach_the_classifier_with_their_token_types(pair_file, tmp_path):
    cfg = TrainConfig.for_task("regress", data=str(pair_file), out=str(tmp_path / "p"), **TINY)
    task = make_task(cfg, log=quiet)
    assert task.pairs and task.model.cfg.type_vocab_size == 2
    b = task.train_batches(0)[0]
    ids, km, tt, y = b
    for row in range(len(ids)):  # types 1 exactly after the first <sep>, on real tokens
        sep = int(np.flatnonzero(ids[row] == task.tokenizer.sep_id)[0])
        n = int(km[row].sum())
        assert tt[row, :sep + 1].sum() == 0 and tt[row, sep + 1:n].tolist() == [1] * (n - sep - 1)
    task.model.eval()
    with nn.no_grad():
        with_types = task._forward(b)[0]
        without = task.model(ids, km)
    assert not np.allclose(with_types, without)  # the types change the embeddings
    task.model.train()
    task.loss_and_backward(b)
    g = dict(task.model.named_parameters())["body.type.weight"].grad
    assert np.abs(g).sum(axis=1).min() > 0  # both type rows learn


@pytest.fixture
def minilm():
    """Skips the test when all-MiniLM-L6-v2 (or safetensors) is not installed."""
    pytest.importorskip("safetensors")
    from numformer.pretrained.sentence import default_model_path
    try:
        default_model_path()
    except FileNotFoundError:
        pytest.skip("all-MiniLM-L6-v2 not installed")


def test_minilm_pairs_receive_token_types(pair_file, tmp_path, minilm):
    cfg = TrainConfig.for_task("regress", data=str(pair_file), out=str(tmp_path / "m"),
                               **dict(TINY, dim=384, n_heads=12), init="minilm", limit=20)
    task = make_task(cfg, log=quiet)
    ids, km, tt, y = b = task.train_batches(0)[0]
    wp = task.tokenizer
    assert ids[0, 0] == wp.cls_id and tt[0].max() == 1
    task.model.eval()
    with nn.no_grad():
        got = task._forward(b)[0]
        assert np.allclose(got, task.model(ids, km, tt))
        assert not np.allclose(got, task.model(ids, km))


def test_pooler_pooling_feeds_the_head_bert_s_tanh_pooler(pair_file, tmp_path, minilm):
    cfg = TrainConfig.for_task("regress", data=str(pair_file), out=str(tmp_path / "m"),
                               **dict(TINY, dim=384, n_heads=12), init="minilm", limit=20,
                               pooling="pooler")
    task = make_task(cfg, log=quiet)
    ids, km, tt, y = task.train_batches(0)[0]
    m = task.model
    m.eval()
    with nn.no_grad():
        h = m.bert(ids, km, token_type_ids=tt)  # (B, T, C)
        w, b = m.bert.pooler.dense.weight.value, m.bert.pooler.dense.bias.value
        pooled = np.tanh(h[:, 0].astype(np.float64) @ w + b)  # (B, C): BERT's pooler
        want = pooled @ m.fc.weight.value + m.fc.bias.value  # (B, 1)
        np.testing.assert_allclose(m(ids, km, token_type_ids=tt), want, rtol=1e-4, atol=1e-5)
        assert not np.allclose(want, np.tanh(h.mean(1) @ w + b) @ m.fc.weight.value  # not a mean
                               + m.fc.bias.value, atol=1e-3)
    m.train()
    m.zero_grad()
    task.loss_and_backward((ids, km, tt, y))
    assert np.abs(m.bert.pooler.dense.weight.grad).max() > 0  # the pooler is trained too


# regression ---------------------------------------------------------------------------

def test_mse_op_gradient_and_value():
    rng = np.random.default_rng(0)
    report = check_op(ops.losses.mse_forward, ops.losses.mse_backward,
                      dict(pred=rng.standard_normal((5, 3)), targets=rng.standard_normal((5, 3))),
                      ["pred"])
    assert report.ok, report.table()
    loss, _ = ops.losses.mse_forward(np.array([1.0, 2.0], np.float32), np.array([0.0, 0.0]))
    assert loss == pytest.approx(2.5) and loss.dtype == np.float32
    with pytest.raises(ValueError, match=r"targets: expected the shape of pred \(2,\)"):
        ops.losses.mse_forward(np.zeros(2, np.float32), np.zeros(3))
    layer = nn.MSELoss()
    layer(np.array([1.0, 3.0]), np.array([0.0, 1.0]))
    assert layer.backward().tolist() == [1.0, 2.0]  # 2 (pred - y) / n


def test_bce_logits_op_gradient_value_and_extremes():
    rng = np.random.default_rng(1)
    report = check_op(ops.losses.bce_logits_forward, ops.losses.bce_logits_backward,
                      dict(logits=3 * rng.standard_normal((6, 2)),
                           targets=rng.uniform(0, 1, (6, 2))), ["logits"])
    assert report.ok, report.table()
    x, t = np.array([0.3, -1.2, 2.0]), np.array([0.25, 1.0, 0.0])
    s = 1 / (1 + np.exp(-x))
    loss, _ = ops.losses.bce_logits_forward(x, t)
    assert loss == pytest.approx(np.mean(-(t * np.log(s) + (1 - t) * np.log(1 - s))), rel=1e-12)
    # a logit of +-1000 is finite both ways: a sure right answer costs 0, a sure wrong one |x|
    big = np.array([1000.0, -1000.0, 1000.0])
    loss, cache = ops.losses.bce_logits_forward(big, np.array([1.0, 0.0, 0.0]))
    assert loss == pytest.approx(1000.0 / 3)
    assert ops.losses.bce_logits_backward(1.0, cache).tolist() == pytest.approx([0, 0, 1 / 3])
    with pytest.raises(ValueError, match=r"targets: expected values in \[0, 1\], got \[0, 1.5\]"):
        ops.losses.bce_logits_forward(np.zeros(2), np.array([0.0, 1.5]))
    with pytest.raises(ValueError, match=r"targets: expected the shape of logits \(2,\)"):
        ops.losses.bce_logits_forward(np.zeros(2), np.zeros(3))


def test_bce_logits_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x, t, g = rng.standard_normal(20) * 4, rng.uniform(0, 1, 20), float(rng.normal())
    layer = nn.BCEWithLogitsLoss()
    loss = layer(x, t)
    dx = layer.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(xt, torch.tensor(t))
    (ref * g).backward()
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    assert np.allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_cosent_op_gradient_order_ties_and_extremes():
    rng = np.random.default_rng(4)
    s = np.tanh(rng.standard_normal((10, 1)))
    t = rng.integers(0, 4, (10, 1)).astype(float)  # ties: pairs of equal targets do not count
    report = check_op(ops.losses.cosent_forward, ops.losses.cosent_backward,
                      dict(scores=s, targets=t), ["scores"])
    assert report.ok, report.table()
    t = np.array([0.0, 1.0, 2.0, 3.0])
    right = np.array([-0.9, -0.3, 0.3, 0.9])  # the targets' order, by gaps of 0.6
    loss, cache = ops.losses.cosent_forward(right, t)
    assert 0 < loss < 1e-4  # every pair ordered right by >= 0.6: exp(-12) a pair, 6 pairs
    loss_wrong, cache = ops.losses.cosent_forward(right[::-1].copy(), t)
    assert loss_wrong == pytest.approx(20 * 1.8, abs=0.01)  # the widest wrong gap dominates
    ds = ops.losses.cosent_backward(1.0, cache)
    assert ds[0] > 0 > ds[3] and ds.sum() == pytest.approx(0, abs=1e-12)  # lift 0, lower 3
    loss, _ = ops.losses.cosent_forward(right + 5.0, t)  # only differences of scores count
    assert loss == pytest.approx(ops.losses.cosent_forward(right, t)[0], rel=1e-12)
    loss, cache = ops.losses.cosent_forward(rng.standard_normal(5), np.full(5, 2.0))
    assert loss == 0 and not ops.losses.cosent_backward(1.0, cache).any()  # no pair at all
    loss, cache = ops.losses.cosent_forward(np.array([-1000.0, 1000.0]), np.array([1.0, 0.0]))
    assert loss == pytest.approx(20 * 2000)  # finite: a log-sum-exp that includes the 1
    assert np.isfinite(ops.losses.cosent_backward(1.0, cache)).all()
    with pytest.raises(ValueError, match="scale: expected a finite number > 0, got 0"):
        ops.losses.cosent_forward(right, t, scale=0)
    with pytest.raises(ValueError, match=r"targets: expected the shape of scores \(4,\)"):
        ops.losses.cosent_forward(right, t[:3])


def test_cosent_matches_torch():
    """Against the loss written with torch's logsumexp and its autograd."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    s, t, g = np.tanh(rng.standard_normal(12)), rng.uniform(0, 5, 12).round(1), 0.8
    layer = nn.CoSENTLoss(scale=20.0)
    loss = layer(s[:, None], t[:, None])
    ds = layer.backward(g)
    st, tt = torch.tensor(s, requires_grad=True), torch.tensor(t)
    z = 20.0 * (st[None, :] - st[:, None])
    ref = torch.logsumexp(torch.cat([torch.zeros(1, dtype=torch.float64),
                                     z[tt[:, None] > tt[None, :]]]), 0)
    (ref * g).backward()
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    assert ds.shape == (12, 1)
    assert np.allclose(ds[:, 0], st.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_pearson_spearman_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, 60).astype(float)  # many ties
    y = x + rng.normal(size=60)
    y[:10] = np.round(y[:10])
    assert M.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert M.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    assert M.rankdata([3, 1, 3, 2]).tolist() == stats.rankdata([3, 1, 3, 2]).tolist()
    assert np.isnan(M.pearson([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="at least 2 values"):
        M.spearman([1.0], [2.0])


def _good_counts(path, seed: int, step: float = 1.0):
    """A CSV of 240 texts of four words, each scored ``step`` times its count of 'good'."""
    rng = np.random.default_rng(seed)
    lines = ["text,score"]
    for _ in range(240):
        k = int(rng.integers(0, 5))
        words = ["good"] * k + list(rng.choice(["x", "y", "z"], 4 - k))
        lines.append(f"{' '.join(rng.permutation(words))},{step * k:g}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_tiny_regression_run_loss_falls_and_predicts_scores(tmp_path, capsys):
    p = _good_counts(tmp_path / "scores.csv", seed=4)  # the score counts 'good' among four
    out = tmp_path / "r"
    cfg = TrainConfig.for_task("regress", data=str(p), out=str(out),
                               **dict(TINY, epochs=8, lr=3e-3))
    summary = train(cfg, log=quiet)
    hist = json.loads((out / "history.json").read_text())
    loss = hist["train_loss"]
    assert np.mean(loss[-5:]) < 0.5 * np.mean(loss[:5]), loss
    assert summary["metrics"]["dev_pearson"] > 0.8
    assert set(summary["metrics"]) == {f"{s}_{m}" for s in ("dev", "test")
                                       for m in ("loss", "pearson", "spearman")}
    assert main(["predict", "-c", str(out), "good good good good", "x y z x"]) == 0
    scores = [float(line.split()[0]) for line in capsys.readouterr().out.splitlines()]
    assert scores[0] > scores[1] + 1.0
    assert main(["eval", str(out)]) == 0
    text = capsys.readouterr().out
    assert "dev: predicted score (label) of the first 5 of" in text


def test_bce_regression_learns_a_bounded_score_and_predicts_in_its_range(tmp_path, capsys):
    # the score on 0-5 as STS-B's: 1.25 per 'good' among four
    p = _good_counts(tmp_path / "scores.csv", seed=5, step=1.25)
    out = tmp_path / "b"
    # the last weights (keep_best ''): the dev Spearman of four-valued labels saturates
    # within the first epochs, and the first best would be kept
    cfg = TrainConfig.for_task("regress", data=str(p), out=str(out), regress_loss="bce",
                               keep_best="", **dict(TINY, epochs=16, lr=3e-3))
    task = make_task(cfg, log=quiet)
    assert (task.label_low, task.label_high) == (0.0, 5.0)
    assert task.train_labels.min() == 0.0 and task.train_labels.max() == 1.0
    summary = train(cfg, log=quiet)
    assert summary["metrics"]["dev_pearson"] > 0.8
    assert summary["metrics"]["dev_loss"] < 0.5  # the MSE in the score's units (variance ~3)
    assert main(["predict", "-c", str(out), "good good good good", "x y z x"]) == 0
    scores = [float(line.split()[0]) for line in capsys.readouterr().out.splitlines()]
    assert 0.0 <= scores[1] < scores[0] <= 5.0 and scores[0] - scores[1] > 2.0
    with pytest.raises(Exception, match="regress_loss: a loss of the regress task; this is "
                                        "classify"):
        TrainConfig.for_task("classify", regress_loss="bce")


def test_predict_reads_pairs_two_by_two(pair_file, tmp_path, capsys):
    out = tmp_path / "pp"
    train(TrainConfig.for_task("regress", data=str(pair_file), out=str(out),
                               **dict(TINY, max_steps=3)), log=quiet)
    assert main(["predict", "-c", str(out), "w1 w2 w3", "w1 w2 w3", "w1 w2 w3", "w7 w8 w9"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("|", 1)[1].strip() for line in lines] == ["w1 w2 w3 | w1 w2 w3",
                                                                 "w1 w2 w3 | w7 w8 w9"]
    float(lines[0].split()[0])  # a score first
    assert main(["predict", "-c", str(out), "w1", "w2", "w3"]) == 2
    assert "expected an even number of texts (a b a b ...), got 3" in capsys.readouterr().err


def test_masked_lm_from_a_folder_and_a_jsonl_field(tmp_path):
    from numformer.data.user_data import read_texts
    root = tmp_path / "texts"
    (root / "a").mkdir(parents=True)
    lines = [f"le parlement vote la loi numero {i}" for i in range(60)]
    (root / "a" / "one.txt").write_text("\n".join(lines[:30]) + "\n\n", encoding="utf-8")
    (root / "two.txt").write_text("\n".join(lines[30:]), encoding="utf-8")
    (root / "skip.md").write_text("not read", encoding="utf-8")
    assert sorted(read_texts(root)) == sorted(lines)
    j = tmp_path / "t.jsonl"
    j.write_text("".join(json.dumps({"body": t, "n": i}) + "\n" for i, t in enumerate(lines)),
                 encoding="utf-8")
    assert read_texts(j, "body") == lines
    from numformer.data.files import DataError
    with pytest.raises(DataError, match=r"t.jsonl, line 1: expected an object with a string "
                                        r"'text'"):
        read_texts(j)
    for data, extra in ((root, {}), (j, {"text_column": "body"})):
        cfg = TrainConfig.for_task("mlm", dataset="text", data=str(data), out=str(tmp_path / "m"),
                                   overwrite=True, **dict(TINY, max_steps=2), **extra)
        summary = train(cfg, log=quiet)
        assert np.isfinite(summary["metrics"]["eval_loss"])


def test_pair_swap_trains_on_both_orders_and_scores_them_averaged(pair_file, tmp_path, capsys):
    base = dict(TINY, max_steps=3)
    plain = make_task(TrainConfig.for_task("regress", data=str(pair_file),
                                           out=str(tmp_path / "a"), **base), log=quiet)
    cfg = TrainConfig.for_task("regress", data=str(pair_file), out=str(tmp_path / "s"),
                               pair_swap=True, **base)
    task = make_task(cfg, log=quiet)
    n = len(plain.train_ids)
    assert len(task.train_ids) == len(task.train_labels) == 2 * n
    tok = task.tokenizer
    for i in (0, 7, n - 1):  # the second half holds each pair as (b, a), with its score
        ids = plain.train_ids[i].tolist()  # <cls> a <sep> b
        sep = ids.index(tok.sep_id)
        a, b = ids[1:sep], ids[sep + 1:]
        assert task.train_ids[n + i].tolist() == [tok.cls_id, *b, tok.sep_id, *a]
        assert task.train_types[n + i].tolist() == [0] * (len(b) + 2) + [1] * len(a)
        assert task.train_labels[n + i] == task.train_labels[i]
    assert task.train_ids[:n][0].tolist() == plain.train_ids[0].tolist()
    # evaluation: the mean of the two orders' scores, so (a, b) and (b, a) score alike
    seqs, types = task.evals["dev"][0], task.eval_types["dev"]
    task.model.eval()
    with nn.no_grad():
        one = task.predict_scores(seqs, types)
        other = task.predict_scores(*task.eval_swapped["dev"])
        got = task.eval_outputs("dev", task.predict_scores)
    assert not np.allclose(one, other)  # the order matters to the model itself
    assert np.allclose(got, 0.5 * (one + other))
    out = tmp_path / "run"
    train(TrainConfig.for_task("regress", data=str(pair_file), out=str(out), pair_swap=True,
                               **base), log=quiet)
    assert main(["predict", "-c", str(out), "w1 w2 w3", "w4 w5 w6", "w4 w5 w6", "w1 w2 w3"]) == 0
    s1, s2 = (float(line.split()[0]) for line in capsys.readouterr().out.strip().splitlines())
    assert s1 == s2


def test_pair_swap_needs_pairs(csv_file, tmp_path):
    cfg = TrainConfig.for_task("classify", data=str(csv_file), out=str(tmp_path / "x"),
                               pair_swap=True, **TINY)
    with pytest.raises(ValueError, match="pair_swap: expected text pairs"):
        make_task(cfg, log=quiet)
