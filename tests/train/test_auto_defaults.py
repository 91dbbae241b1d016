"""Defaults chosen from the data (numformer.train.auto): max_len from the length
distribution, epochs from the dataset size, lr from where the model starts, the
dev metric kept; printed, written into the run's settings, and overridable."""

import json

import numpy as np
import pytest

from numformer.train import auto
from numformer.train.checkpoint import load_checkpoint
from numformer.train.config import TrainConfig
from numformer.train.run import train
from numformer.train.settings import ConfigError


@pytest.mark.parametrize("lengths,cap,expected", [
    (range(1, 101), 512, 96),       # 95th percentile 95.05 -> 96, a multiple of 16
    ([5] * 50, 512, 16),            # at least 16
    ([700] * 9 + [3], 512, 512),    # capped by attention's cost
    ([700] * 10, 256, 256),         # or by the model's positions
    ([17] * 20, 512, 32),
])
def test_max_len_is_the_95th_percentile_rounded_up_and_capped(lengths, cap, expected):
    value, why = auto.choose_max_len(list(lengths), cap)
    assert value == expected
    assert ("capped" in why) == (np.percentile(list(lengths), 95) > cap)


@pytest.mark.parametrize("n,start,expected", [
    (6920, "scratch", 4), (22500, "scratch", 3), (100, "scratch", 20), (10**6, "scratch", 3),
    (2000, "scratch", 13),
    (5749, "pretrained", 4), (6920, "pretrained", 3), (22500, "pretrained", 2),
])
def test_epochs_follow_the_dataset_size(n, start, expected):
    assert auto.choose_epochs(n, start)[0] == expected


def _csv(path, n=240, seed=0):
    """A two-class CSV whose texts are 6-30 words (class by its first word)."""
    rng = np.random.default_rng(seed)
    rows = ["text,label"]
    for i in range(n):
        label = ("good", "bad")[i % 2]
        words = [label] + [f"w{int(w)}" for w in rng.integers(0, 50, rng.integers(5, 30))]
        rows.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_classify_run_chooses_prints_and_saves_its_defaults(tmp_path):
    data = _csv(tmp_path / "d.csv")
    lines = []
    cfg = TrainConfig.for_task("classify", data=str(data), out=str(tmp_path / "run"),
                               max_steps=3, progress=False, dim=16, d_ff=32, n_layers=1)
    train(cfg, log=lines.append)
    chosen = next(l for l in lines if l.startswith("chosen from the data"))
    assert "max_len 32:" in chosen  # <cls> + 6..30 words: 95th percentile about 30
    # 240 rows: the dev and test splits carved from train leave 192 to train on
    assert "epochs 20:" in chosen and "lr 0.0005" in chosen and "dev_accuracy" in chosen
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.npz")["meta"]["train_config"]
    assert (saved["max_len"], saved["epochs"], saved["lr"], saved["keep_best"]) == \
        (32, 20, 5e-4, "dev_accuracy")
    # --resume with the same command re-chooses the same values and continues
    cfg2 = TrainConfig.for_task("classify", data=str(data), out=str(tmp_path / "run"),
                                max_steps=4, progress=False, dim=16, d_ff=32, n_layers=1)
    summary = train(cfg2, resume=True, log=lambda *a: None)
    assert summary["steps"] == 4


def test_a_value_given_wins_over_the_data(tmp_path):
    data = _csv(tmp_path / "d.csv")
    lines = []
    cfg = TrainConfig.for_task("classify", data=str(data), out=str(tmp_path / "run"),
                               max_steps=2, progress=False, dim=16, d_ff=32, n_layers=1,
                               max_len=12, epochs=2, lr=1e-3, keep_best="")
    train(cfg, log=lines.append)
    assert not any(l.startswith("chosen from the data") for l in lines)
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["best"] is None
    assert (cfg.max_len, cfg.epochs, cfg.lr) == (12, 2, 1e-3)


@pytest.mark.parametrize("task,field", [("mlm", "max_len"), ("lm", "epochs"), ("mlm", "lr"),
                                        ("lm", "keep_best")])
def test_auto_is_refused_for_the_tasks_that_do_not_choose(task, field):
    value = "auto" if field == "keep_best" else 0
    with pytest.raises(ConfigError) as e:
        TrainConfig.for_task(task, **{field: value})
    assert e.value.field == field and "classify and regress" in str(e.value)
