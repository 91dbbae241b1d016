"""Training end to end on tiny settings: resume, NaN, Ctrl-C, configs, the CLI."""

import itertools
import json
import os
import signal

import numpy as np
import pytest

from numformer.train import TrainConfig, train
from numformer.train.checkpoint import load_checkpoint
from numformer.train.config import read_config_file
from numformer.train.loop import Trainer, TrainingDiverged
from numformer.train.tasks import make_task

TINY = dict(dim=16, n_heads=2, n_layers=1, d_ff=32, batch_size=16, warmup=2, progress=False,
            dropout=0.1)


def tiny(task, tmp_path, **kw):
    base = dict(TINY, task=task, out=str(tmp_path / task), limit=300)
    if task == "lm":
        base.update(max_len=32, max_steps=12, limit=0)
    base.update(kw)
    return TrainConfig(**base)


def quiet(*a, **k):
    pass


@pytest.mark.parametrize("task", ["mlm", "classify", "lm"])
def test_each_task_trains_and_writes_its_outputs(tmp_path, task):
    cfg = tiny(task, tmp_path, epochs=6 if task == "classify" else 3, lr=3e-3)
    summary = train(cfg, log=quiet)
    files = summary["files"]
    for key in ("checkpoint", "curves", "history"):
        assert os.path.getsize(files[key]) > 0
    losses = json.load(open(files["history"]))["train_loss"]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.05, losses
    m = summary["metrics"]
    if task == "mlm":
        assert 0 <= m["mlm_accuracy"] <= 1 and m["perplexity"] > 1
        assert os.path.exists(files["projector_vectors"])
    elif task == "classify":
        assert 0 <= m["test_accuracy"] <= 1 and os.path.exists(files["confusion_test"])
    else:
        assert m["bits_per_char"] == pytest.approx(m["eval_loss"] / np.log(2), rel=1e-9)
        assert len(open(files["sample"]).read()) > 40


def _interrupt_at(trainer, step):
    """Make the task send SIGINT to this process during the given step."""
    inner = trainer.task.loss_and_backward

    def wrapped(b):
        if trainer.state.step + 1 == step:
            os.kill(os.getpid(), signal.SIGINT)
        return inner(b)
    trainer.task.loss_and_backward = wrapped


@pytest.mark.parametrize("task", ["mlm", "classify", "lm", "classify+word_dropout"])
def test_ctrl_c_saves_and_resume_continues_exactly(tmp_path, task):
    kw = dict(epochs=2, eval_every=0) if task != "lm" else dict(max_steps=10)
    if task.endswith("+word_dropout"):  # its draws continue where they stopped, too
        task, kw["word_dropout"] = "classify", 0.3
    ref_cfg = tiny(task, tmp_path / "ref", **kw)
    ref = Trainer(make_task(ref_cfg, log=quiet), ref_cfg, log=quiet)
    ref.fit()
    ref_losses = ref.state.history["train_loss"]
    stop = len(ref_losses) // 2 + 1  # mid-epoch for mlm/classify: 2 epochs of ~19/15 steps

    cfg = tiny(task, tmp_path / "run", **kw)
    t1 = Trainer(make_task(cfg, log=quiet), cfg, log=quiet)
    _interrupt_at(t1, stop)
    t1.fit()
    assert t1.state.step == stop
    saved = load_checkpoint(t1.checkpoint_path)
    assert saved["meta"]["state"]["step"] == stop

    t2 = Trainer(make_task(cfg, log=quiet), cfg, log=quiet)  # a fresh process would do this
    t2.resume()
    t2.fit()
    # the step after the interruption has the loss of the run that never stopped
    assert t2.state.history["train_loss"] == ref_losses
    for (name, p), (_, q) in zip(ref.model.named_parameters(), t2.model.named_parameters()):
        np.testing.assert_array_equal(p.value, q.value, err_msg=name)


def test_word_dropout_turns_training_words_into_unk_and_leaves_evaluation_alone(tmp_path):
    plain = make_task(tiny("classify", tmp_path / "a"), log=quiet)
    noisy = make_task(tiny("classify", tmp_path / "b", word_dropout=0.25), log=quiet)
    tok = noisy.tokenizer
    changed = eligible = 0
    for (ids, km, y), (ids2, km2, y2) in zip(plain.train_batches(1), noisy.train_batches(1)):
        np.testing.assert_array_equal(km, km2)
        np.testing.assert_array_equal(y, y2)
        diff = ids != ids2
        assert np.all(ids2[diff] == tok.unk_id)
        assert not np.any(diff & ~km) and not np.any(diff[:, 0]), "padding or <cls> replaced"
        changed += diff.sum()
        eligible += (km & (ids >= tok.n_special)).sum()
    assert 0.2 < changed / eligible < 0.3, (changed, eligible)
    # the same epoch drawn again (a resumed run) is the same; another epoch differs
    again = [b[0] for b in noisy.train_batches(1)]
    for a, b in zip(again, (b[0] for b in noisy.train_batches(1))):
        np.testing.assert_array_equal(a, b)
    b = next(iter(plain.train_batches(1)))  # one batch, drawn as step 0 of two epochs
    assert np.any(noisy._noisy(b, 1, 0)[0] != noisy._noisy(b, 2, 0)[0])
    # evaluation reads the texts as they are
    np.testing.assert_allclose(noisy.evaluate()["test_loss"],
                               make_task(tiny("classify", tmp_path / "c", word_dropout=0.25),
                                         log=quiet).evaluate()["test_loss"])
    for a, b in zip(noisy.evals["test"][0], plain.evals["test"][0], strict=True):
        np.testing.assert_array_equal(a, b)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny("classify", tmp_path, epochs=3, eval_every=4)
    trainer = Trainer(make_task(cfg, log=quiet), cfg, log=quiet)
    inner = trainer.task.loss_and_backward

    def poisoned(b):
        loss, n = inner(b)
        return (float("nan") if trainer.state.step == 6 else loss), n
    trainer.task.loss_and_backward = poisoned
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 7 .*last good "
                                               r"checkpoint: .*checkpoint.npz"):
        trainer.fit()
    ck = load_checkpoint(trainer.checkpoint_path)
    assert ck["meta"]["state"]["step"] == 4
    # the weights were not updated by the NaN step: they are those of step 6
    assert trainer.state.step == 6


def test_config_files_and_flags(tmp_path):
    (tmp_path / "c.toml").write_text('[train]\ndim = 32\nlr = 1\nnorm_first = true\n')
    assert read_config_file(tmp_path / "c.toml") == {"dim": 32, "lr": 1, "norm_first": True}
    cfg = TrainConfig.from_dict(read_config_file(tmp_path / "c.toml"))
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.norm_first
    (tmp_path / "c.json").write_text('{"dim": "wide"}')
    with pytest.raises(ValueError, match=r"c.json: dim: expected an integer >= 1, got 'wide'"):
        TrainConfig.from_dict(read_config_file(tmp_path / "c.json"), source="c.json")
    with pytest.raises(ValueError, match=r"unknown settings \['colour'\]"):
        TrainConfig.from_dict({"colour": 1})
    (tmp_path / "bad.json").write_text('{"dim": 3,,}')
    with pytest.raises(ValueError, match=r"bad.json: line 1"):
        read_config_file(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="task: expected one of"):
        TrainConfig(task="translate")


def test_cli_train_flags_override_file_and_bad_data_exit_2(tmp_path, capsys):
    from numformer.cli import main
    (tmp_path / "c.json").write_text(json.dumps({"dim": 8, "epochs": 5}))
    out = tmp_path / "cls"
    rc = main(["train", "classify", "--config", str(tmp_path / "c.json"), "--epochs", "1",
               "--limit", "64", "--n-heads", "2", "--n-layers", "1", "--d-ff", "16",
               "--no-progress", "--out", str(out)])
    assert rc == 0
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["dim"] == 8 and saved["epochs"] == 1 and saved["task"] == "classify"
    capsys.readouterr()
    empty = tmp_path / "sst"
    empty.mkdir()
    (empty / "stsa.binary.train").write_text("")
    rc = main(["train", "classify", "--dataset", "sst2", "--data", str(empty), "--out",
               str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "stsa.binary.train" in err


def test_task_defaults_are_shared_by_the_cli_and_python():
    from numformer.train.config import TASK_DEFAULTS
    cfg = TrainConfig.for_task("lm", dim=64)
    assert cfg.task == "lm" and cfg.dim == 64 and cfg.max_len == TASK_DEFAULTS["lm"]["max_len"]
    assert TrainConfig.for_task("mlm").epochs == TASK_DEFAULTS["mlm"]["epochs"]
    with pytest.raises(ValueError, match="task: expected one of"):
        TrainConfig.for_task("translate")


def test_max_steps_is_the_length_of_the_run_across_epochs(tmp_path):
    """--max-steps trains that many steps even when an epoch is shorter (a
    character LM's epoch is one pass worth of random windows)."""
    text = tmp_path / "t.txt"
    text.write_text("".join(f"line {i}: the quick brown fox\n" for i in range(100)))
    cfg = tiny("lm", tmp_path, dataset="text", data=str(text), eval_fraction=0.2, max_steps=12)
    trainer = Trainer(make_task(cfg, log=quiet), cfg, log=quiet)
    assert trainer.steps_per_epoch < 12
    trainer.fit()
    assert trainer.state.step == 12
    assert trainer.state.epoch >= 12 // trainer.steps_per_epoch
    assert len(trainer.state.history["train_loss"]) == 12


def test_classify_imdb_by_rating(tmp_path):
    """--dataset imdb-rating: the star ratings as 8 classes, named 1/10 ... 10/10."""
    d = tmp_path / "imdb"
    d.mkdir()
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        rows = []
        for i in range(48):
            rating = int(rng.choice([1, 2, 3, 4, 7, 8, 9, 10]))
            word = "awful" if rating <= 2 else "poor" if rating <= 4 else \
                "fine" if rating <= 8 else "superb"
            rows.append(json.dumps({"id": i, "rating": rating, "label": int(rating >= 7),
                                    "text": f"this film was {word} , really {word} ."}))
        (d / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    cfg = tiny("classify", tmp_path, dataset="imdb-rating", data=str(d), epochs=2, max_len=16)
    task = make_task(cfg, log=quiet)
    assert task.n_classes == 8
    assert task.class_names == ["1/10", "2/10", "3/10", "4/10", "7/10", "8/10", "9/10", "10/10"]
    train(cfg, log=quiet)
    from numformer.train.load import load_trained
    trained = load_trained(cfg.out)
    assert trained.model.cfg.n_classes == 8
    assert trained.meta["class_names"] == task.class_names


def test_keep_best_reports_and_saves_the_best_evaluation(tmp_path):
    """--keep-best dev_accuracy: best.npz holds the weights of the evaluation with the
    highest dev accuracy; the summary and `load_trained(folder)` are those weights,
    while checkpoint.npz keeps the last step for --resume."""
    from numformer.train.load import load_trained
    cfg = tiny("classify", tmp_path, epochs=5, lr=3e-3, keep_best="dev_accuracy",
               keep_margin=0)
    summary = train(cfg, log=quiet)
    h = json.load(open(summary["files"]["history"]))
    i = int(np.argmax(h["dev_accuracy"]))  # the first of equal maxima
    best = summary["best"]
    assert best["step"] == h["eval_step"][i] and best["value"] == h["dev_accuracy"][i]
    assert summary["metrics"]["dev_accuracy"] == pytest.approx(h["dev_accuracy"][i], abs=1e-12)
    assert summary["metrics"]["test_accuracy"] == pytest.approx(h["test_accuracy"][i], abs=1e-12)
    assert load_trained(cfg.out).meta["state"]["step"] == best["step"]
    assert load_checkpoint(os.path.join(cfg.out, "checkpoint.npz"))["meta"]["state"]["step"] \
        == summary["steps"]
    assert load_checkpoint(summary["files"]["best"])["optim"] is None


def _scripted(trainer, values, n):
    """The trainer's task reports dev_accuracy ``values`` in turn (one an evaluation,
    whatever the weights) on a dev split of ``n`` examples; returns the log."""
    it = itertools.chain(values, itertools.repeat(0.70))  # then 0.70 to the end
    trainer.task.evaluate = lambda: {"dev_loss": 0.5, "dev_accuracy": next(it),
                                     "test_loss": 0.5, "test_accuracy": 0.5}
    trainer.task.eval_count = lambda split: n if split == "dev" else 0


def test_keep_margin_keeps_the_latest_evaluation_within_the_dev_noise(tmp_path):
    """With n = 400 dev examples the standard error of an accuracy of 0.80 is 0.02: a
    later evaluation within 2 of them (0.04) of the best replaces the kept weights, one
    further below does not, and a better one always does."""
    said = []
    cfg = tiny("classify", tmp_path, epochs=2, lr=3e-3, keep_best="dev_accuracy",
               eval_every=3)
    trainer = Trainer(make_task(cfg, log=quiet), cfg, log=said.append)
    _scripted(trainer, [0.70, 0.80, 0.77, 0.75, 0.78], n=400)
    trainer.fit()
    # evaluations at steps 3, 6, 9, 12, 15, ...: 0.77 (step 9) is kept, 0.75 (step 12) is
    # 0.05 below the best and is not, 0.78 (step 15) is; later 0.70s are not
    assert trainer.best["step"] == 15 and trainer.best["value"] == 0.78
    assert trainer.best["top"] == 0.80 and trainer.best["top_step"] == 6
    assert load_checkpoint(trainer.best_path)["meta"]["state"]["step"] == 15
    line = next(x for x in said if x.startswith("kept the weights of step 15"))
    assert "within 2 standard errors (0.02 each) of the best, 0.8 at step 6" in line
    # --keep-margin 0: only a better evaluation is kept (the strict best)
    cfg0 = tiny("classify", tmp_path / "strict", epochs=2, lr=3e-3, keep_best="dev_accuracy",
                eval_every=3, keep_margin=0)
    strict = Trainer(make_task(cfg0, log=quiet), cfg0, log=quiet)
    _scripted(strict, [0.70, 0.80, 0.77, 0.75, 0.78], n=400)
    strict.fit()
    assert strict.best["step"] == 6 and strict.best["value"] == 0.80


def test_kept_last_evaluation_is_not_evaluated_again(tmp_path):
    """When the kept weights are the last step's, the run reports the last evaluation
    as it is (no reload, no second evaluation of the same weights)."""
    cfg = tiny("classify", tmp_path, epochs=2, lr=3e-3, keep_best="dev_accuracy")
    trainer = Trainer(make_task(cfg, log=quiet), cfg, log=quiet)
    steps = trainer.total_steps
    calls = []
    values = iter([0.80, 0.79])  # the last is within the noise of a 50-example dev split
    def evaluate():
        calls.append(trainer.state.step)
        return {"dev_loss": 0.5, "dev_accuracy": next(values), "test_loss": 0.5,
                "test_accuracy": 0.6}
    trainer.task.evaluate = evaluate
    trainer.task.eval_count = lambda split: 50
    metrics = trainer.fit()
    assert calls == [steps // 2, steps] and metrics["dev_accuracy"] == 0.79
    assert trainer.best["step"] == steps


def test_keep_best_of_a_loss_takes_the_lowest(tmp_path):
    cfg = tiny("mlm", tmp_path, epochs=3, lr=3e-3, eval_every=7, keep_best="eval_loss")
    summary = train(cfg, log=quiet)
    h = json.load(open(summary["files"]["history"]))
    i = int(np.argmin(h["eval_loss"]))
    assert summary["best"]["step"] == h["eval_step"][i]
    assert summary["metrics"]["eval_loss"] == pytest.approx(h["eval_loss"][i], rel=1e-9)


def test_keep_best_names_the_metrics_and_fresh_runs_drop_a_stale_best(tmp_path):
    with pytest.raises(ValueError, match=r"keep_best: expected one of this task's metrics "
                                         r"\['dev_loss', 'dev_accuracy', 'test_loss', "
                                         r"'test_accuracy'\], got 'accuracy'"):
        train(tiny("classify", tmp_path, keep_best="accuracy"), log=quiet)
    said = []
    Trainer(make_task(tiny("classify", tmp_path, keep_best="test_accuracy"), log=quiet),
            tiny("classify", tmp_path, keep_best="test_accuracy"), log=said.append)
    assert any("chooses the weights by the test split" in line for line in said)
    cfg = tiny("classify", tmp_path, epochs=2, keep_best="dev_accuracy")
    train(cfg, log=quiet)
    assert os.path.exists(os.path.join(cfg.out, "best.npz"))
    summary = train(tiny("classify", tmp_path, epochs=1, overwrite=True),  # same out, no keep_best
                    log=quiet)
    assert summary["best"] is None and "best" not in summary["files"]
    assert not os.path.exists(os.path.join(cfg.out, "best.npz"))


def test_keep_best_survives_ctrl_c_and_resume(tmp_path):
    kw = dict(epochs=3, eval_every=3, keep_best="dev_loss")
    ref_cfg = tiny("classify", tmp_path / "ref", **kw)
    ref = Trainer(make_task(ref_cfg, log=quiet), ref_cfg, log=quiet)
    ref.fit()
    cfg = tiny("classify", tmp_path / "run", **kw)
    t1 = Trainer(make_task(cfg, log=quiet), cfg, log=quiet)
    _interrupt_at(t1, ref.state.step // 2 + 1)
    t1.fit()
    assert t1.best is not None and t1.state.step < ref.state.step
    t2 = Trainer(make_task(cfg, log=quiet), cfg, log=quiet)
    t2.resume()
    assert t2.best == t1.best  # from the checkpoint's metadata
    t2.fit()
    assert t2.best == ref.best
    for (name, p), (_, q) in zip(ref.model.named_parameters(), t2.model.named_parameters()):
        np.testing.assert_array_equal(p.value, q.value, err_msg=name)  # both hold the best
