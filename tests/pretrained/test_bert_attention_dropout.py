"""A pretrained BERT drops attention probabilities with its file's
``attention_probs_dropout_prob`` in training mode (all-MiniLM-L6-v2: 0.1), and
only there: eval mode computes what Hugging Face computes."""

import numpy as np
import pytest

from numformer.nn.attention import Attention
from numformer.nn.module import no_grad
from numformer.pretrained import load_bert
from numformer.pretrained.bert import bert_model_config
from numformer.pretrained.config import BertConfig

pytest.importorskip("safetensors", reason="pip install safetensors (the pretrained extra)")


def _attention_layers(model):
    return [m for m in model.modules() if isinstance(m, Attention)]


def test_bert_config_sets_the_attention_dropout():
    assert bert_model_config(BertConfig()).attn_dropout == 0.1
    assert bert_model_config(BertConfig(attention_probs_dropout_prob=0.0)).attn_dropout == 0.0


def test_the_files_value_reaches_every_attention_layer(checkpoint_factory):
    folder = checkpoint_factory("p25", cfg={**checkpoint_factory.cfg,
                                            "attention_probs_dropout_prob": 0.25,
                                            "hidden_dropout_prob": 0.0})
    bert, _ = load_bert(folder)
    layers = _attention_layers(bert)
    assert len(layers) == 2 and all(m.dropout == 0.25 for m in layers)
    ids = np.array([[2, 5, 6, 7, 3], [2, 9, 3, 0, 0]])
    km = ids != 0
    with no_grad():
        bert.eval()
        a = bert(ids, km)
        b = bert(ids, km)
        np.testing.assert_array_equal(a, b)  # eval: no dropout at all
        bert.train()
        bert.seed(0)
        c = bert(ids, km)
        bert.seed(1)
        d = bert(ids, km)
    # hidden dropout is 0 in this file: what differs between seeds is the attention's
    assert not np.allclose(c, d) and not np.allclose(c, a)


def test_minilm_uses_its_attention_dropout(real_model_dir):
    bert, _ = load_bert(real_model_dir)
    assert bert.cfg.attention_probs_dropout_prob == 0.1
    assert all(m.dropout == 0.1 for m in _attention_layers(bert))
    assert len(_attention_layers(bert)) == 6


def test_classify_init_trains_with_attention_dropout(tiny_bert_dir, tmp_path):
    """The `train classify --init` path builds its BERT with the file's value (0.1)
    and runs it in training mode."""
    from numformer.train import TrainConfig
    from numformer.train.tasks import make_task
    d = tmp_path / "sst"
    d.mkdir()
    for split in ("train", "dev", "test"):
        (d / f"stsa.binary.{split}").write_text("1 the cat sat\n0 the dog sat\n" * 4)
    cfg = TrainConfig(task="classify", dataset="sst2", data=str(d), init=str(tiny_bert_dir),
                      max_len=8, epochs=1, batch_size=4, progress=False, out=str(tmp_path / "o"))
    task = make_task(cfg, log=lambda *a: None)
    layers = _attention_layers(task.model)
    assert layers and all(m.dropout == 0.1 for m in layers)
