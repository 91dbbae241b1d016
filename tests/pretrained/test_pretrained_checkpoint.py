"""Loading checkpoints: a tiny random BERT written in the Hugging Face layout goes
through load_bert (the same path as all-MiniLM-L6-v2) and then

- with a classification head passes the float64 gradient check (every
  Parameter of embeddings, blocks, pooler and head; mean pooling in eval mode,
  BERT's tanh pooler in train mode with dropout masks held fixed);
- equals transformers' BertModel on the same file (float64, every position), a
  check of the q/k/v fusion and of every transpose with C != F;
- is refused, with every problem listed, when tensors are missing, extra,
  mis-shaped or not float.
"""

import json
import sys

import numpy as np
import pytest

from numformer import get_backend, set_backend
from numformer.gradcheck import check_module, check_op
from numformer.nn import Dropout
from numformer.pretrained import (BertClassifier, BertConfig, load_bert, load_model,
                                  numformer_to_hf, save_model)
from numformer.ops import tanh_backward, tanh_forward
from numformer.testing import assert_close


def tiny_batch(tok):
    b = tok.encode_batch(["the cat sat on the mat", "a good movie !", "dog"])  # T = 8
    tt = np.zeros_like(b.ids)
    tt[0, 4:] = 1  # a second segment
    return b.ids, b.key_mask, tt


def test_load_bert_builds_the_architecture_of_the_config(tiny_bert_dir, checkpoint_factory):
    model, tok = load_bert(tiny_bert_dir)
    cfg = checkpoint_factory.cfg
    assert not model.training  # eval mode, as from_pretrained
    assert len(model.encoder.blocks) == cfg["num_hidden_layers"]
    block = model.encoder.blocks[0]
    assert not block.norm_first and block.ln1.eps == 1e-12 == model.embed_norm.eps
    assert block.attn.Wqkv.shape == (6, 18) and block.ffn.fc1.weight.shape == (6, 10)
    assert tok.vocab_size == cfg["vocab_size"] and tok.max_length == 10
    ids, mask, tt = tiny_batch(tok)
    h = model(ids, mask, tt)
    assert h.shape == ids.shape + (6,) and h.dtype == np.float32


@pytest.fixture
def numpy_backend():
    """The reference ops: the check is of how the model wires its layers' backward passes;
    kernels are checked against the reference by their own tests (and at these tiny
    shapes their per-call overhead would make 3,000 forward passes slow)."""
    previous = get_backend()
    set_backend("numpy")
    yield
    set_backend(previous)


@pytest.mark.parametrize("pooling, train", [("mean", False), ("pooler", True)])
def test_classifier_on_loaded_bert_passes_gradcheck(tiny_bert_dir, numpy_backend, pooling, train):
    model, tok = load_bert(tiny_bert_dir, dtype=np.float64)
    clf = BertClassifier(model, n_classes=3, pooling=pooling, seed=1)
    if not train:  # no dropout: p = 0 (eval mode keeps no cache for a backward)
        for m in clf.modules():
            if isinstance(m, Dropout):
                m.p = 0.0
    clf.train()  # with dropout: embedding, residual and head dropout with fixed masks
    ids, mask, tt = tiny_batch(tok)
    report = check_module(clf, ids, mask, token_type_ids=tt, title=f"BertClassifier({pooling})")
    names = {r.name for r in report.rows}
    assert {"bert.encoder.blocks.1.attn.Wqkv", "bert.tok.weight",
            "bert.type.weight", "fc.weight"} <= names
    report.assert_ok()
    # the check has teeth: the deepest gradients are far above finite-difference noise
    assert np.abs(clf.bert.tok.weight.grad).max() > 1e-3
    assert np.abs(clf.bert.encoder.blocks[0].attn.Wqkv.grad).max() > 1e-3
    if pooling == "pooler":
        assert np.abs(clf.bert.pooler.dense.weight.grad).max() > 1e-3


def test_tanh_op_gradcheck():
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    check_op(tanh_forward, tanh_backward, dict(x=x), ["x"]).assert_ok()


def test_tiny_model_equals_transformers(tiny_bert_dir):
    torch = pytest.importorskip("torch", reason="pip install torch==2.13.0")
    transformers = pytest.importorskip("transformers", reason="pip install transformers")
    hf = transformers.BertModel.from_pretrained(str(tiny_bert_dir)).eval().double()
    model, tok = load_bert(tiny_bert_dir, dtype=np.float64)
    ids, mask, tt = tiny_batch(tok)
    with torch.no_grad():
        out = hf(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask.astype(np.int64)),
                 token_type_ids=torch.from_numpy(tt))
    h = model(ids, mask, tt)
    assert_close(h, out.last_hidden_state.numpy(), rtol=0, atol=1e-10, what="tiny hidden states")
    assert_close(model.pooler(h), out.pooler_output.numpy(), rtol=0, atol=1e-10, what="pooler")


def test_save_and_load_round_trip(tiny_bert_dir, checkpoint_factory, tmp_path):
    model, _ = load_bert(tiny_bert_dir)
    written = checkpoint_factory.tensors()
    for name, arr in numformer_to_hf(model).items():  # the inverse map gives back the file
        np.testing.assert_array_equal(arr, written[name], err_msg=name)
    again = load_model(save_model(model, tmp_path / "saved"))
    for (name, p), (_, q) in zip(model.named_parameters(), again.named_parameters()):
        np.testing.assert_array_equal(p.value, q.value, err_msg=name)


# refusing a checkpoint that does not fit ------------------------------------------

def test_missing_extra_misshaped_and_int_tensors_are_all_listed(checkpoint_factory):
    t = checkpoint_factory.tensors()
    del t["encoder.layer.1.attention.self.key.bias"]
    del t["pooler.dense.weight"]
    t["cls.predictions.bias"] = np.zeros(28, np.float32)
    t["encoder.layer.0.intermediate.dense.weight"] = t["encoder.layer.0.intermediate.dense.weight"].T
    t["embeddings.LayerNorm.bias"] = np.zeros(6, np.int32)
    folder = checkpoint_factory("bad", t)
    with pytest.raises(ValueError) as err:
        load_bert(folder)
    msg = str(err.value)
    for expected in ("missing 2 tensor(s): encoder.layer.1.attention.self.key.bias, pooler.dense.weight",
                     "unexpected 1 tensor(s): cls.predictions.bias",
                     "encoder.layer.0.intermediate.dense.weight: expected (10, 6), got (6, 10)",
                     "embeddings.LayerNorm.bias: expected a float dtype, got int32"):
        assert expected in msg, msg


def test_layer_count_mismatch_lists_the_extra_layer(checkpoint_factory):
    cfg = dict(checkpoint_factory.cfg, num_hidden_layers=1)
    folder = checkpoint_factory("deeper", checkpoint_factory.tensors(), cfg)  # 2 layers on disk
    with pytest.raises(ValueError, match=r"unexpected 16 tensor\(s\): encoder\.layer\.1\."):
        load_bert(folder)


def test_task_checkpoint_prefix_gets_a_hint(checkpoint_factory):
    t = {f"bert.{k}": v for k, v in checkpoint_factory.tensors().items()}
    with pytest.raises(ValueError, match="'bert.' prefix"):
        load_bert(checkpoint_factory("prefixed", t))


def test_missing_files_and_pickles_are_refused(checkpoint_factory, tmp_path):
    folder = checkpoint_factory("nofile")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="pickles and are never loaded"):
        load_bert(folder)
    with pytest.raises(FileNotFoundError, match="expected a folder"):
        load_bert(tmp_path / "nowhere")


def test_config_choices_numformer_cannot_compute_are_refused():
    with pytest.raises(ValueError, match="position_embedding_type"):
        BertConfig.from_dict({"position_embedding_type": "relative_key"})
    with pytest.raises(ValueError, match="hidden_act"):
        BertConfig.from_dict({"hidden_act": "swish"})
    with pytest.raises(ValueError, match="num_attention_heads"):
        BertConfig.from_dict({"hidden_size": 10, "num_attention_heads": 3})


def test_safetensors_missing_names_the_extra(tiny_bert_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)  # import fails
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match=r"numformer\[pretrained\]"):
        load_bert(tiny_bert_dir)


def test_bad_batches_name_the_argument(tiny_bert_dir):
    model, tok = load_bert(tiny_bert_dir)
    ids, mask, tt = tiny_batch(tok)
    bad = tt.copy()
    bad[1, 2] = 2
    with pytest.raises(ValueError, match=r"token_type_ids: expected ids in \[0, 2\), got 2"):
        model(ids, mask, bad)
    with pytest.raises(ValueError, match="token_type_ids: expected shape"):
        model(ids, mask, tt[:, :3])
    with pytest.raises(ValueError, match="ids: expected at most 10 tokens"):
        model(np.zeros((1, 11), np.int64))
    with pytest.raises(ValueError, match=r"ids: expected ids in \[0, 28\)"):
        model(ids + 28, mask)
    with pytest.raises(ValueError, match="pooling: expected one of"):
        BertClassifier(model, 2, pooling="max")


def test_config_json_of_saved_model_is_loadable_by_transformers(tiny_bert_dir, tmp_path):
    transformers = pytest.importorskip("transformers", reason="pip install transformers")
    model, _ = load_bert(tiny_bert_dir)
    folder = save_model(model, tmp_path / "out")
    cfg = transformers.BertConfig.from_pretrained(str(folder))
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (6, 2, 10)
    assert json.loads((folder / "config.json").read_text())["layer_norm_eps"] == 1e-12


def test_state_dicts_with_the_old_embedding_names_still_load(tiny_bert_dir):
    """Checkpoints written before BERT was a Transformer configuration named its
    embeddings embeddings.{word,position,token_type,norm}: they load unchanged."""
    from numformer.pretrained.bert import LEGACY_NAMES
    model, tok = load_bert(tiny_bert_dir)
    clf = BertClassifier(model, n_classes=2, seed=3)
    state = clf.state_dict()
    old = {}
    for name, value in state.items():
        for legacy, now in LEGACY_NAMES.items():
            if name.startswith("bert." + now):
                name = "bert." + legacy + name[len("bert." + now):]
                break
        old[name] = value
    assert "bert.embeddings.word.weight" in old and "bert.tok.weight" not in old
    fresh = BertClassifier(load_bert(tiny_bert_dir)[0], n_classes=2, seed=4)
    fresh.load_state_dict(old)
    for name, value in state.items():
        np.testing.assert_array_equal(dict(fresh.named_parameters())[name].value, value,
                                      err_msg=name)
