"""Hugging Face BERT checkpoints (config.json + model.safetensors) in and out of numformer.

The map between the two layouts, per encoder layer i (HF Linear weights are
(out, in); numformer's dense weights are (in, out), so every one is transposed):

    HF encoder.layer.i.                         numformer encoder.blocks.i.
    attention.self.{query,key,value}.weight  -> attn.Wqkv  = [Wq^T | Wk^T | Wv^T]   (C, 3C)
    attention.self.{query,key,value}.bias    -> attn.bqkv  = [bq | bk | bv]         (3C,)
    attention.output.dense.{weight,bias}     -> attn.Wo = W^T (C, C), attn.bo
    attention.output.LayerNorm.{weight,bias} -> ln1.gamma, ln1.beta   (post-LN: after attention)
    intermediate.dense.{weight,bias}         -> ffn.fc1.weight = W^T (C, F), ffn.fc1.bias
    output.dense.{weight,bias}               -> ffn.fc2.weight = W^T (F, C), ffn.fc2.bias
    output.LayerNorm.{weight,bias}           -> ln2.gamma, ln2.beta   (after the feed-forward)

and embeddings.{word,position,token_type}_embeddings.weight -> {tok,pos,type}.weight
(no transpose: rows are tokens), embeddings.LayerNorm -> embed_norm,
pooler.dense -> pooler.dense (transposed). The fused Wqkv
keeps HF's head layout: numformer splits q, k, v and then heads exactly as HF
reshapes (B, T, C) to (B, T, H, D).

``safetensors`` is an optional dependency (the ``pretrained`` extra); it is
imported only when a checkpoint is read or written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from numformer.pretrained.config import BertConfig

INSTALL_HINT = ("pip install 'numformer[pretrained]'  (or just: pip install safetensors)")
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# Tensors some checkpoints carry that are not weights: position_ids is the
# buffer arange(L) of older transformers versions.
IGNORED = ("embeddings.position_ids",)


def safetensors_numpy():
    """The ``safetensors.numpy`` module, or an ImportError saying what to install."""
    try:
        from safetensors import numpy as st_numpy
    except ImportError as e:
        raise ImportError("reading or writing a pretrained BERT needs the 'safetensors' package, "
                          "which is not a core dependency of numformer; install the extra: "
                          + INSTALL_HINT) from e
    return st_numpy


def hf_layout(cfg: BertConfig) -> dict[str, tuple]:
    """Every tensor of a Hugging Face ``BertModel`` checkpoint, with its shape."""
    C, F = cfg.hidden_size, cfg.intermediate_size
    shapes = {
        "embeddings.word_embeddings.weight": (cfg.vocab_size, C),
        "embeddings.position_embeddings.weight": (cfg.max_position_embeddings, C),
        "embeddings.token_type_embeddings.weight": (cfg.type_vocab_size, C),
        "embeddings.LayerNorm.weight": (C,),
        "embeddings.LayerNorm.bias": (C,),
    }
    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            shapes[f"{p}attention.self.{name}.weight"] = (C, C)
            shapes[f"{p}attention.self.{name}.bias"] = (C,)
        shapes.update({
            f"{p}attention.output.dense.weight": (C, C),
            f"{p}attention.output.dense.bias": (C,),
            f"{p}attention.output.LayerNorm.weight": (C,),
            f"{p}attention.output.LayerNorm.bias": (C,),
            f"{p}intermediate.dense.weight": (F, C),
            f"{p}intermediate.dense.bias": (F,),
            f"{p}output.dense.weight": (C, F),
            f"{p}output.dense.bias": (C,),
            f"{p}output.LayerNorm.weight": (C,),
            f"{p}output.LayerNorm.bias": (C,),
        })
    shapes["pooler.dense.weight"] = (C, C)
    shapes["pooler.dense.bias"] = (C,)
    return shapes


def check_tensors(tensors: dict, cfg: BertConfig, source: str = "checkpoint") -> None:
    """Raise ValueError listing every missing, unexpected, mis-shaped or non-float tensor."""
    expected = hf_layout(cfg)
    missing = [k for k in expected if k not in tensors]
    unexpected = sorted(k for k in tensors if k not in expected and k not in IGNORED)
    misshaped = [f"{k}: expected {expected[k]}, got {tuple(np.shape(tensors[k]))}"
                 for k in expected if k in tensors and tuple(np.shape(tensors[k])) != expected[k]]
    not_float = [f"{k}: expected a float dtype, got {np.asarray(tensors[k]).dtype}"
                 for k in expected if k in tensors and np.asarray(tensors[k]).dtype.kind != "f"]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): " + ", ".join(missing))
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensor(s): " + ", ".join(unexpected))
    if misshaped:
        problems.append(f"wrong shape in {len(misshaped)} tensor(s): " + "; ".join(misshaped))
    if not_float:
        problems.append(f"wrong dtype in {len(not_float)} tensor(s): " + "; ".join(not_float))
    if not problems:
        return
    hint = ""
    if missing and any(k.startswith("bert.") for k in tensors):
        hint = ("\n  (the names carry a 'bert.' prefix: this is a task model's checkpoint; "
                "numformer loads the bare BertModel layout)")
    raise ValueError(f"{source} does not match a BertModel with {cfg.num_hidden_layers} layers, "
                     f"hidden {cfg.hidden_size}, feed-forward {cfg.intermediate_size}, vocabulary "
                     f"{cfg.vocab_size}:\n  " + "\n  ".join(problems) + hint)


def hf_to_numformer(tensors: dict, cfg: BertConfig,
                    source: str = "checkpoint") -> dict[str, np.ndarray]:
    """The state dict of ``numformer.pretrained.BertModel`` from HF tensors (checked first)."""
    check_tensors(tensors, cfg, source)
    t = {k: np.asarray(v) for k, v in tensors.items()}
    state = {
        "tok.weight": t["embeddings.word_embeddings.weight"],  # (V, C)
        "pos.weight": t["embeddings.position_embeddings.weight"],  # (L, C)
        "type.weight": t["embeddings.token_type_embeddings.weight"],  # (S, C)
        "embed_norm.gamma": t["embeddings.LayerNorm.weight"],
        "embed_norm.beta": t["embeddings.LayerNorm.bias"],
        "pooler.dense.weight": t["pooler.dense.weight"].T,  # (C, C) in x out
        "pooler.dense.bias": t["pooler.dense.bias"],
    }
    for i in range(cfg.num_hidden_layers):
        p, q = f"encoder.layer.{i}.", f"encoder.blocks.{i}."
        qkv = [f"{p}attention.self.{n}" for n in ("query", "key", "value")]
        state.update({
            q + "attn.Wqkv": np.concatenate([t[n + ".weight"].T for n in qkv], axis=1),  # (C, 3C)
            q + "attn.bqkv": np.concatenate([t[n + ".bias"] for n in qkv]),  # (3C,)
            q + "attn.Wo": t[p + "attention.output.dense.weight"].T,  # (C, C)
            q + "attn.bo": t[p + "attention.output.dense.bias"],
            q + "ln1.gamma": t[p + "attention.output.LayerNorm.weight"],
            q + "ln1.beta": t[p + "attention.output.LayerNorm.bias"],
            q + "ffn.fc1.weight": t[p + "intermediate.dense.weight"].T,  # (C, F)
            q + "ffn.fc1.bias": t[p + "intermediate.dense.bias"],
            q + "ffn.fc2.weight": t[p + "output.dense.weight"].T,  # (F, C)
            q + "ffn.fc2.bias": t[p + "output.dense.bias"],
            q + "ln2.gamma": t[p + "output.LayerNorm.weight"],
            q + "ln2.beta": t[p + "output.LayerNorm.bias"],
        })
    return state


def numformer_to_hf(model) -> dict[str, np.ndarray]:
    """The inverse map: HF-named, contiguous float arrays of a numformer BertModel."""
    cfg = model.cfg
    s = dict((name, p.value) for name, p in model.named_parameters())
    C = cfg.hidden_size
    out = {
        "embeddings.word_embeddings.weight": s["tok.weight"],
        "embeddings.position_embeddings.weight": s["pos.weight"],
        "embeddings.token_type_embeddings.weight": s["type.weight"],
        "embeddings.LayerNorm.weight": s["embed_norm.gamma"],
        "embeddings.LayerNorm.bias": s["embed_norm.beta"],
        "pooler.dense.weight": s["pooler.dense.weight"].T,  # (out, in)
        "pooler.dense.bias": s["pooler.dense.bias"],
    }
    for i in range(cfg.num_hidden_layers):
        p, q = f"encoder.layer.{i}.", f"encoder.blocks.{i}."
        for j, n in enumerate(("query", "key", "value")):
            out[f"{p}attention.self.{n}.weight"] = s[q + "attn.Wqkv"][:, j * C:(j + 1) * C].T  # (C, C)
            out[f"{p}attention.self.{n}.bias"] = s[q + "attn.bqkv"][j * C:(j + 1) * C]
        out.update({
            p + "attention.output.dense.weight": s[q + "attn.Wo"].T,
            p + "attention.output.dense.bias": s[q + "attn.bo"],
            p + "attention.output.LayerNorm.weight": s[q + "ln1.gamma"],
            p + "attention.output.LayerNorm.bias": s[q + "ln1.beta"],
            p + "intermediate.dense.weight": s[q + "ffn.fc1.weight"].T,  # (F, C)
            p + "intermediate.dense.bias": s[q + "ffn.fc1.bias"],
            p + "output.dense.weight": s[q + "ffn.fc2.weight"].T,  # (C, F)
            p + "output.dense.bias": s[q + "ffn.fc2.bias"],
            p + "output.LayerNorm.weight": s[q + "ln2.gamma"],
            p + "output.LayerNorm.bias": s[q + "ln2.beta"],
        })
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def read_tensors(path) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as NumPy arrays (no torch, no pickle)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights: no file {path}")
    st = safetensors_numpy()
    try:
        return st.load_file(str(path))
    except Exception as e:  # a corrupt file, or a dtype NumPy lacks (bfloat16)
        raise ValueError(f"weights: cannot read {path} as safetensors with NumPy: {e}") from e


def find_weights(folder: Path) -> Path:
    path = folder / WEIGHTS_FILE
    if path.is_file():
        return path
    others = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt"))
    extra = (f"; found {others}, which are pickles and are never loaded: convert them to "
             f"safetensors first") if others else ""
    raise FileNotFoundError(f"weights: expected {path}{extra}")


def load_model(folder, dtype=np.float32):
    """The numformer BertModel of a checkpoint folder (config.json, model.safetensors), in
    eval mode (dropout off), as Hugging Face's ``from_pretrained`` returns it."""
    from numformer.pretrained.bert import BertModel
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"path: expected a folder holding {CONFIG_FILE} and "
                                f"{WEIGHTS_FILE}, got {folder}")
    cfg = BertConfig.from_file(folder / CONFIG_FILE)
    weights = find_weights(folder)
    state = hf_to_numformer(read_tensors(weights), cfg, source=str(weights))
    model = BertModel(cfg, rng=0, dtype=dtype)
    model.load_state_dict(state)
    return model.eval()


def save_model(model, folder) -> Path:
    """Write config.json and model.safetensors (HF layout) into ``folder``; each file goes
    to a temporary name first and is renamed, so a crash leaves no half-written file."""
    st = safetensors_numpy()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS_FILE
    tmp = folder / (WEIGHTS_FILE + ".tmp")
    st.save_file(numformer_to_hf(model), str(tmp), metadata={"format": "pt"})
    os.replace(tmp, weights)
    config = folder / CONFIG_FILE
    tmp = folder / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(model.cfg.to_dict(), indent=2) + "\n")
    os.replace(tmp, config)
    return folder
