"""The commands that use a saved model: eval, predict, neighbors, generate, attention."""

import json

import numpy as np

import pytest

from numformer.cli import main
from numformer.train import TrainConfig, train

TINY = dict(dim=16, n_heads=2, n_layers=1, d_ff=32, batch_size=16, warmup=2, progress=False,
            epochs=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for task, extra in (("mlm", dict(limit=300)), ("classify", dict(limit=200)),
                        ("lm", dict(max_len=32, max_steps=5))):
        cfg = TrainConfig(task=task, out=str(root / task), **TINY, **extra)
        out[task] = (root / task, train(cfg, log=lambda *a: None))
    return out


def test_eval_reproduces_the_training_evaluation(runs, capsys):
    for task in ("mlm", "classify", "lm"):
        path, summary = runs[task]
        assert main(["eval", str(path)]) == 0
        text = capsys.readouterr().out
        metrics = json.loads(text[:text.index("}") + 1])
        for k, v in summary["metrics"].items():
            assert metrics[k] == pytest.approx(v, rel=1e-9), (task, k)


def test_predict_classifies_and_fills_masks(runs, capsys):
    assert main(["predict", "-c", str(runs["classify"][0]), "a wonderful film",
                 "dull and boring"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert all(line.split()[0] in ("negative", "positive") for line in lines)
    assert main(["predict", "-c", str(runs["mlm"][0]), "le <mask> de la commission",
                 "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<mask> at token 1: ") and out.count("(") == 3


def test_neighbors_generate_attention(runs, capsys, tmp_path):
    assert main(["neighbors", "la", "-k", "4", "-c", str(runs["mlm"][0])]) == 0
    out = capsys.readouterr().out
    assert out.startswith("la: ") and out.count("(") == 4
    assert main(["neighbors", "zzzzqq", "-c", str(runs["mlm"][0])]) == 1
    assert "not in the vocabulary" in capsys.readouterr().err
    assert main(["generate", "-c", str(runs["lm"][0]), "--prompt", "ROMEO:", "--length",
                 "20", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ROMEO:") and len(out.rstrip("\n")) >= 6
    png = tmp_path / "att.png"
    assert main(["attention", "le parlement", "-c", str(runs["mlm"][0]), "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_wrong_or_broken_checkpoints_exit_2(runs, capsys, tmp_path):
    assert main(["generate", "-c", str(runs["mlm"][0])]) == 2
    assert "holds a 'mlm' model" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really")
    assert main(["eval", str(bad)]) == 2
    assert "corrupt or not a numformer checkpoint" in capsys.readouterr().err
    assert main(["neighbors", "x", "-c", str(tmp_path / "nothing")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_classifier_initialised_from_a_masked_lm_run(runs, tmp_path):
    from numformer.train.load import load_trained
    from numformer.train.tasks import make_task
    mlm_path = runs["mlm"][0]
    cfg = TrainConfig(task="classify", init=str(mlm_path), out=str(tmp_path / "c"), limit=100,
                      **TINY)
    task = make_task(cfg, log=lambda *a: None)
    mlm = load_trained(mlm_path)
    assert task.tokenizer.tokens() == mlm.tokenizer.tokens()
    for name, value in mlm.model.state_dict().items():
        if name.startswith("body."):
            np.testing.assert_array_equal(dict(task.model.named_parameters())[name].value, value)
    summary = train(cfg, log=lambda *a: None)
    assert 0 <= summary["metrics"]["test_accuracy"] <= 1
    bad = TrainConfig(task="classify", init=str(mlm_path), max_len=64, out=str(tmp_path / "x"),
                      **{k: v for k, v in TINY.items()})
    with pytest.raises(ValueError, match=r"max_len: expected at most 20"):
        make_task(bad, log=lambda *a: None)


def test_lm_held_out_text_from_another_file(tmp_path):
    from numformer.train.tasks import make_task
    held = tmp_path / "held.txt"
    held.write_text("a held-out text that is long enough for two windows of 32 bytes each.\n" * 2)
    cfg = TrainConfig(task="lm", eval_data=str(held), max_len=32, out=str(tmp_path / "lm"),
                      **{**TINY, "epochs": 1})
    task = make_task(cfg, log=lambda *a: None)
    assert task.held_text == held.read_text()
    assert len(task.train) > 1_000_000  # all of tinyshakespeare trains
