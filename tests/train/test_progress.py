"""The progress bar's time left: the first (compiling) step is kept out of the rate.

A fake clock drives tqdm (its ``_time``), so nothing here depends on real time:
the first step "takes" 120 s, every later one 1 s."""

import numpy as np
import pytest

from numformer.train import loop


def _fake_bar(total=400):
    bar = loop._progress(True, total, 0)
    clock = [0.0]
    bar._time = lambda: clock[0]
    bar.start_t = bar.last_print_t = 0.0
    return bar, clock


def _rate(bar) -> float:
    """The steps/s tqdm's time left divides by: its EMA, else (n - initial) / elapsed."""
    d = bar.format_dict
    return d["rate"] if d["rate"] else (d["n"] - d["initial"]) / d["elapsed"]


def _run(bar, clock, steps, advance):
    for i in range(steps):
        clock[0] += 120.0 if i == 0 else 1.0
        advance(bar)


@pytest.mark.parametrize("steps", [2, 40, 200])
def test_the_rate_excludes_the_warm_up_step(steps):
    bar, clock = _fake_bar()
    try:
        _run(bar, clock, steps, loop._advance)
        assert bar.initial == 1 and bar.n == steps  # the warm-up step: done, not counted as speed
        assert _rate(bar) == pytest.approx(1.0, rel=1e-9)
        remaining = (bar.total - bar.n) / _rate(bar)
        assert remaining == pytest.approx(bar.total - steps, rel=1e-9)
    finally:
        bar.close()


def test_without_it_the_warm_up_step_distorts_the_rate():
    """The control: plain ``update`` (what the loop did before) counts the 120 s."""
    bar, clock = _fake_bar()
    try:
        _run(bar, clock, 200, lambda b: b.update(1))
        assert _rate(bar) < 0.9
    finally:
        bar.close()


def test_the_loop_advances_the_bar_through_it(tmp_path, monkeypatch):
    from numformer.train import TrainConfig, train
    bars, calls = [], []
    real_progress, real_advance = loop._progress, loop._advance

    def progress(*a):
        bars.append(real_progress(*a))
        return bars[-1]

    def advance(bar):
        calls.append(bar.n)
        real_advance(bar)

    monkeypatch.setattr(loop, "_progress", progress)
    monkeypatch.setattr(loop, "_advance", advance)
    cfg = TrainConfig(task="classify", out=str(tmp_path / "run"), limit=100, dim=16, n_heads=2,
                      n_layers=1, d_ff=32, batch_size=16, epochs=1, progress=True)
    summary = train(cfg, log=lambda *a, **k: None)
    assert calls == list(np.arange(summary["steps"]))
    assert bars[0].initial == 1 and bars[0].n == summary["steps"]
