"""The curves of a run: one axis per metric group, a smoothed train loss over the
raw one, the learning rate on its own panel, and the lr recorded by the loop."""

import json

import numpy as np
import pytest

from numformer.train.outputs import curves_figure, ema, metric_group, plot_curves


def _history(n=300, evals=(60, 120, 180, 240, 300), seed=0):
    r = np.random.default_rng(seed)
    steps = list(range(1, n + 1))
    loss = 3.0 * np.exp(-np.arange(n) / 120) + 0.4 * r.standard_normal(n) + 1.0
    warm = np.minimum(1.0, np.arange(1, n + 1) / 30)
    return {"step": steps, "train_loss": loss.tolist(), "eval_step": list(evals),
            "lr": (1e-3 * warm).tolist(),
            "dev_loss": [2.5, 2.0, 1.8, 1.7, 1.65], "dev_accuracy": [0.3, 0.5, 0.6, 0.62, 0.64],
            "test_loss": [2.6, 2.1, 1.9, 1.8, 1.7], "test_accuracy": [0.3, 0.48, 0.58, 0.6, 0.61],
            "eval_perplexity": [400.0, 250.0, 180.0, 150.0, 140.0]}


def _axes(fig):
    return {ax.get_title(): ax for ax in fig.axes}


def _labels(ax):
    return sorted(line.get_label() for line in ax.get_lines())


def test_one_axis_per_metric_group():
    import matplotlib.pyplot as plt
    h = _history()
    fig = curves_figure(h, "classify")
    try:
        axes = _axes(fig)
        assert len(fig.axes) == 4
        assert sorted(axes) == ["accuracy", "learning rate", "loss", "perplexity"]
        # accuracies share their axis, bounded to [0, 1], and are not drawn against perplexity
        acc = axes["accuracy"]
        assert _labels(acc) == ["dev_accuracy", "test_accuracy"]
        lo, hi = acc.get_ylim()
        assert 0.0 <= lo and hi <= 1.0
        assert _labels(axes["perplexity"]) == ["eval_perplexity"]
        assert axes["perplexity"].get_ylim()[1] >= 400
        # every loss on the loss axis; the lr alone on its own
        loss_labels = _labels(axes["loss"])
        assert {"dev_loss", "test_loss", "train_loss"} <= {"train_loss" if l == "train loss" else l
                                                           for l in loss_labels}
        (lr_line,) = axes["learning rate"].get_lines()
        np.testing.assert_array_equal(lr_line.get_ydata(), h["lr"])
        np.testing.assert_array_equal(lr_line.get_xdata(), h["step"])
    finally:
        plt.close(fig)


def test_smoothed_train_loss_is_drawn_and_smoother_than_the_raw_one():
    import matplotlib.pyplot as plt
    h = _history()
    fig = curves_figure(h)
    try:
        lines = {line.get_label(): line for line in _axes(fig)["loss"].get_lines()}
        raw = np.asarray(lines.pop("train loss").get_ydata())
        (smooth_label,) = [k for k in lines if k.startswith("train loss, EMA")]
        smooth = np.asarray(lines[smooth_label].get_ydata())
        np.testing.assert_array_equal(raw, h["train_loss"])
        assert smooth.shape == raw.shape and np.isfinite(smooth).all()
        tv = lambda y: float(np.abs(np.diff(y)).sum())  # total variation
        assert tv(smooth) < 0.2 * tv(raw), (tv(smooth), tv(raw))
        # it follows the trend: close to the noiseless curve late in the run
        trend = 3.0 * np.exp(-np.arange(300) / 120) + 1.0
        assert np.abs(smooth[-100:] - trend[-100:]).max() < 0.35
    finally:
        plt.close(fig)


def test_ema_bias_correction_and_constant_input():
    x = np.full(20, 2.5)
    np.testing.assert_allclose(ema(x, 9), x, rtol=1e-12)  # no pull towards zero at the start
    y = ema([1.0, 3.0], 3)  # b = 0.5: m1 = 0.5 / 0.5 = 1; m2 = (0.25 + 1.5) / 0.75
    assert y[0] == pytest.approx(1.0) and y[1] == pytest.approx(1.75 / 0.75)
    with pytest.raises(ValueError, match="span: expected a number >= 1, got 0"):
        ema([1.0], 0)


def test_metric_groups():
    assert metric_group("dev_accuracy") == metric_group("test_accuracy") == "accuracy"
    assert metric_group("eval_loss") == metric_group("test_loss") == "loss"
    assert metric_group("eval_mlm_accuracy") == "mlm_accuracy"
    assert metric_group("eval_bits_per_char") == "bits_per_char"


def test_a_history_without_lr_or_evals_still_plots(tmp_path):
    import matplotlib.pyplot as plt
    fig = curves_figure({"step": [1, 2, 3], "train_loss": [3.0, 2.0, 1.5], "eval_step": []})
    try:
        assert [ax.get_title() for ax in fig.axes] == ["loss"]
    finally:
        plt.close(fig)
    p = plot_curves(_history(), tmp_path / "c.png")
    assert p.exists() and p.read_bytes()[:4] == b"\x89PNG"


def test_the_loop_records_the_learning_rate_per_step(tmp_path):
    """history["lr"] has one value per step: the schedule's (warm-up, then decay)."""
    from numformer import optim
    from numformer.train import TrainConfig, train
    cfg = TrainConfig(task="classify", out=str(tmp_path / "run"), limit=300, dim=16, n_heads=2,
                      n_layers=1, d_ff=32, batch_size=16, warmup=3, epochs=2, progress=False)
    summary = train(cfg, log=lambda *a, **k: None)
    h = json.load(open(summary["files"]["history"]))
    assert len(h["lr"]) == len(h["step"]) == summary["steps"]
    sched = optim.make_schedule(cfg.schedule, cfg.lr, warmup_steps=min(3, summary["steps"]),
                                total_steps=summary["steps"])
    np.testing.assert_allclose(h["lr"], [sched(s) for s in h["step"]], rtol=1e-12)
