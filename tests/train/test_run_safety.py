"""A run is never corrupted or lost: non-finite gradients, --out already holding a
run, two runs on one folder, --resume with other settings, SIGTERM and SIGKILL."""

import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from numformer.train import TrainConfig, train
from numformer.train import resume as resume_check
from numformer.train import rundir
from numformer.train.checkpoint import load_checkpoint
from numformer.train.loop import NonFiniteGradient, Trainer
from numformer.train.tasks import make_task

TINY = dict(dim=16, n_heads=2, n_layers=1, d_ff=32, batch_size=16, warmup=2, progress=False,
            dropout=0.1)


def tiny(task, root, **kw):
    """A tiny run of ``task`` writing into root/task."""
    base = dict(TINY, task=task, out=str(root / task), limit=300)
    if task == "lm":
        base.update(max_len=32, max_steps=12, limit=0)
    base.update(kw)
    return TrainConfig(**base)


def quiet(*a, **k):
    pass


def snapshot(trainer):
    return ({k: v.copy() for k, v in trainer.model.state_dict().items()},
            {k: (v.copy() if isinstance(v, np.ndarray) else v)
             for k, v in trainer.opt.state_dict().items()})


def assert_same(a: dict, b: dict, what: str):
    assert sorted(a) == sorted(b), what
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{what}: {k}")
        else:
            assert a[k] == b[k], (what, k)


def poison_gradient(trainer, at_step, name, value=np.nan, before=None):
    """Make step ``at_step`` (1-based) leave ``value`` in one element of the
    gradient of parameter ``name``; ``before(trainer)`` runs at the start of that step."""
    inner = trainer.task.loss_and_backward
    params = dict(trainer.model.named_parameters())

    def wrapped(b):
        if trainer.state.step + 1 == at_step and before is not None:
            before(trainer)
        loss, n = inner(b)
        if trainer.state.step + 1 == at_step:
            params[name].grad.flat[-1] = value
        return loss, n
    trainer.task.loss_and_backward = wrapped


# non-finite gradients -------------------------------------------------------------

@pytest.mark.parametrize("clip,value", [(1.0, np.nan), (0.0, np.inf)])
def test_nonfinite_gradient_stops_naming_the_parameter_and_keeps_the_checkpoint(
        tmp_path, clip, value):
    cfg = tiny("classify", tmp_path, epochs=3, eval_every=4, clip=clip)
    trainer = Trainer(make_task(cfg, log=quiet), cfg, log=quiet)
    name = [n for n, _ in trainer.model.named_parameters()][3]
    seen = {}

    def before(t):  # step 7: the checkpoint of step 4 and the weights of step 6
        seen["file"] = t.checkpoint_path.read_bytes()
        seen["state"] = snapshot(t)
    poison_gradient(trainer, 7, name, value, before)
    with pytest.raises(NonFiniteGradient, match=rf"non-finite gradient at step 7 .*the gradient "
                                                rf"of {name} holds 1 NaN or infinite values .*"
                                                rf"last good checkpoint: .*checkpoint.npz"):
        trainer.fit()
    assert trainer.checkpoint_path.read_bytes() == seen["file"]  # bit-identical
    assert load_checkpoint(trainer.checkpoint_path)["meta"]["state"]["step"] == 4
    model, opt = snapshot(trainer)
    assert_same(model, seen["state"][0], "weights after the refused update")
    assert_same(opt, seen["state"][1], "optimizer state after the refused update")
    assert all(np.isfinite(v).all() for v in model.values())


def test_skip_mode_skips_that_update_only(tmp_path):
    cfg = tiny("classify", tmp_path, epochs=1, eval_every=5, on_nonfinite="skip")
    said = []
    trainer = Trainer(make_task(cfg, log=quiet), cfg, log=said.append)
    name = [n for n, _ in trainer.model.named_parameters()][-1]
    seen = {}
    poison_gradient(trainer, 3, name, before=lambda t: seen.setdefault("before", snapshot(t)))
    step = trainer.train_step

    def observed(b):
        out = step(b)
        if trainer.state.step in (3, 4):
            seen[trainer.state.step] = snapshot(trainer)
        return out
    trainer.train_step = observed
    trainer.fit()
    assert_same(seen[3][0], seen["before"][0], "weights after the skipped step 3")
    assert_same(seen[3][1], seen["before"][1], "optimizer state after the skipped step 3")
    assert not np.array_equal(seen[4][0][name], seen[3][0][name])  # step 4 updates again
    assert trainer.skipped == [3]
    assert trainer.opt.t == trainer.state.step - 1  # one update fewer than steps
    assert any(f"the gradient of {name} holds 1 NaN" in s and "update skipped (1 skipped"
               in s for s in said), said
    assert load_checkpoint(trainer.checkpoint_path)["meta"]["skipped_updates"] == [3]


def test_on_nonfinite_is_validated_and_a_flag():
    with pytest.raises(ValueError, match=r"on_nonfinite: expected one of 'stop', 'skip', got 'ignore'"):
        TrainConfig(on_nonfinite="ignore")
    from numformer.cli import build_parser
    args = build_parser().parse_args(["train", "lm", "--on-nonfinite", "skip", "--overwrite"])
    assert args.on_nonfinite == "skip" and args.overwrite is True


def test_nonfinite_weights_are_never_saved(tmp_path):
    """Finite gradients, but an update that makes a weight NaN (an unused row, say):
    the save refuses, names the tensor, and leaves the last checkpoint."""
    cfg = tiny("classify", tmp_path, epochs=2, eval_every=3)
    trainer = Trainer(make_task(cfg, log=quiet), cfg, log=quiet)
    name = [n for n, _ in trainer.model.named_parameters()][0]
    step = trainer.train_step
    seen = {}

    def broken(b):
        out = step(b)
        if trainer.state.step == 5:
            seen["file"] = trainer.checkpoint_path.read_bytes()
            dict(trainer.model.named_parameters())[name].value[0, 0] = np.nan
        return out
    trainer.train_step = broken
    from numformer.train.loop import TrainingDiverged
    with pytest.raises(TrainingDiverged, match=rf"after step 6: .*model/{name} holds 1 "
                                               rf"non-finite values"):
        trainer.fit()
    assert trainer.checkpoint_path.read_bytes() == seen["file"]
    assert not rundir.remove_temporaries(tmp_path / "classify")


def test_load_trained_warns_on_nonfinite_weights(tmp_path):
    from numformer.train.load import NonFiniteWeights, load_trained
    cfg = tiny("mlm", tmp_path, max_steps=3)
    train(cfg, log=quiet)
    path = tmp_path / "mlm" / "checkpoint.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    key = sorted(k for k in arrays if k.startswith("model/"))[1]
    arrays[key] = arrays[key].copy()
    arrays[key].flat[:2] = [np.nan, np.inf]
    np.savez(path, **arrays)  # written around save_checkpoint, which would refuse
    with pytest.warns(NonFiniteWeights, match=rf"{key[len('model/'):]} \(2 of"):
        trained = load_trained(tmp_path / "mlm")
    assert not np.isfinite(dict(trained.model.named_parameters())[key[6:]].value).all()


# --out ---------------------------------------------------------------------------

def test_a_new_run_refuses_an_out_holding_a_run(tmp_path):
    cfg = tiny("classify", tmp_path, epochs=2, keep_best="dev_accuracy")
    train(cfg, log=quiet)
    out = tmp_path / "classify"
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".npz"}
    assert set(before) == {"checkpoint.npz", "best.npz"}
    with pytest.raises(rundir.RunFolderError, match=r"--out .*classify: holds a previous run's "
                                                    r"checkpoint .*pass --resume .*--overwrite "
                                                    r".*new --out"):
        train(tiny("classify", tmp_path, epochs=1), log=quiet)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".npz"} == before
    summary = train(tiny("classify", tmp_path, epochs=1, overwrite=True), log=quiet)
    per_epoch = -(-300 // 16)
    assert summary["steps"] == per_epoch and not (out / "best.npz").exists()
    assert load_checkpoint(out / "checkpoint.npz")["meta"]["state"]["step"] == per_epoch


def test_out_is_checked_before_the_data_is_read(tmp_path, monkeypatch, capsys):
    import numformer.train.run as run_module

    def no_data(*a, **k):
        raise AssertionError("the data was read before --out was checked")
    monkeypatch.setattr(run_module, "make_task", no_data)
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(rundir.RunFolderError, match=r"--out .*afile: is a file, not a folder"):
        train(tiny("mlm", tmp_path, out=str(afile)), log=quiet)
    with pytest.raises(rundir.RunFolderError, match=r"--out .*afile/sub: cannot create"):
        train(tiny("mlm", tmp_path, out=str(afile / "sub")), log=quiet)
    from numformer.cli import main
    assert main(["train", "mlm", "--out", str(afile), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "afile" in err


# the lock --------------------------------------------------------------------------

def test_a_second_run_in_the_same_process_is_locked_out(tmp_path):
    cfg = tiny("mlm", tmp_path, max_steps=4)
    first = Trainer(make_task(cfg, log=quiet), cfg, log=quiet)
    inner = first.task.loss_and_backward
    caught = []

    def meanwhile(b):  # while the first run trains, a second Trainer on the same folder
        if first.state.step == 1 and not caught:
            second = Trainer(make_task(cfg, log=quiet), cfg, log=quiet)
            with pytest.raises(rundir.RunLocked) as e:
                second.fit()
            caught.append(str(e.value))
        return inner(b)
    first.task.loss_and_backward = meanwhile
    first.fit()
    assert caught and f"another run (pid {os.getpid()})" in caught[0], caught
    assert str(tmp_path / "mlm") in caught[0]
    assert first.state.step == 4
    again = train(tiny("mlm", tmp_path, max_steps=6), resume=True, log=quiet)  # lock released
    assert again["steps"] == 6


HOLD_LOCK = """
import sys, time
from numformer.train.rundir import RunLock
lock = RunLock(sys.argv[1]).acquire()  # held while the process lives
print("locked", flush=True)
time.sleep(120)
"""


def test_lock_held_by_another_process_then_stale_after_sigkill(tmp_path):
    out = tmp_path / "mlm"
    out.mkdir()
    child = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert _read_until(child, "locked", timeout=60)
        with pytest.raises(rundir.RunLocked, match=rf"--out {out}: another run \(pid "
                                                   rf"{child.pid}\) is writing to this folder"):
            train(tiny("mlm", tmp_path, max_steps=2), log=quiet)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert (out / "train.lock").read_text().strip() == str(child.pid)  # left behind, stale
    assert train(tiny("mlm", tmp_path, max_steps=2), log=quiet)["steps"] == 2


# --resume -----------------------------------------------------------------------

def test_resume_with_other_data_or_seed_is_refused_naming_them(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("".join(f"line {i}: the quick brown fox\n" for i in range(100)))
    b.write_text("".join(f"row {i}: a lazy dog sleeps\n" for i in range(100)))
    cfg = tiny("lm", tmp_path, dataset="text", data=str(a), eval_fraction=0.2, max_steps=4)
    train(cfg, log=quiet)
    ck = (tmp_path / "lm" / "checkpoint.npz").read_bytes()
    other = dataclasses.replace(cfg, data=str(b), seed=3)
    with pytest.raises(resume_check.ResumeMismatch) as e:
        train(other, resume=True, log=quiet)
    msg = str(e.value)
    assert f"--data: saved '{a}', now '{b}'" in msg and "--seed: saved 0, now 3" in msg, msg
    with pytest.raises(resume_check.ResumeMismatch, match=r"--dim: saved 16, now 32"):
        train(dataclasses.replace(cfg, dim=32), resume=True, log=quiet)
    assert (tmp_path / "lm" / "checkpoint.npz").read_bytes() == ck
    # the same file named from elsewhere is the same data; a longer run is a warning
    said = []
    os.chdir(tmp_path)
    longer = dataclasses.replace(cfg, data="a.txt", max_steps=6)
    assert train(longer, resume=True, log=said.append)["steps"] == 6
    assert any(s.startswith("warning: --resume") and "--max-steps: saved 4, now 6" in s
               for s in said), said
    assert not any("--data" in s for s in said)


def test_resume_uses_the_checkpoint_tokenizer(tmp_path, monkeypatch):
    cfg = tiny("mlm", tmp_path, max_steps=3)
    train(cfg, log=quiet)
    saved = load_checkpoint(tmp_path / "mlm" / "checkpoint.npz")["meta"]["tokenizer"]
    from numformer.data.tokenizers import WordTokenizer

    def no_rebuild(*a, **k):
        raise AssertionError("the vocabulary was rebuilt from the data")
    monkeypatch.setattr(WordTokenizer, "build", no_rebuild)
    train(dataclasses.replace(cfg, max_steps=5), resume=True, log=quiet)
    assert load_checkpoint(tmp_path / "mlm" / "checkpoint.npz")["meta"]["tokenizer"] == saved


def test_resume_without_a_checkpoint_or_with_overwrite_is_a_clear_error(tmp_path, capsys):
    from numformer.cli import main
    out = tmp_path / "lm"
    rc = main(["train", "lm", "--out", str(out), "--resume", "--no-progress"])
    assert rc == 2
    assert f"--resume: {out / 'checkpoint.npz'}: no checkpoint to resume" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--resume continues the run in --out and --overwrite "
                                         "replaces it: give one of them"):
        train(tiny("lm", tmp_path, overwrite=True), resume=True, log=quiet)


def test_every_setting_has_a_resume_rule():
    names = {f.name for f in TrainConfig.fields()}
    rules = resume_check.REFUSED + resume_check.WARNED + resume_check.FREE
    assert len(rules) == len(set(rules)), "a setting in two lists"
    assert names <= set(rules), f"settings without a --resume rule: {names - set(rules)}"


# temporaries of a killed write -------------------------------------------------------

def test_temporaries_of_a_killed_write_are_removed_on_the_next_start(tmp_path):
    cfg = tiny("mlm", tmp_path, max_steps=2)
    train(cfg, log=quiet)
    out = tmp_path / "mlm"
    ours = []
    for name in ("checkpoint.npz", "best.npz"):  # named as save_checkpoint names them
        fd, p = tempfile.mkstemp(prefix=name + ".", suffix=".tmp", dir=out)
        os.write(fd, b"half a zip")
        os.close(fd)
        ours.append(os.path.basename(p))
    theirs = ["checkpoint.npz.notes.txt", "mine.tmp", "checkpoint.npz.A-B.tmp"]
    for n in theirs:
        (out / n).write_text("keep")
    said = []
    train(dataclasses.replace(cfg, max_steps=3), resume=True, log=said.append)
    left = {p.name for p in out.iterdir()}
    assert not left & set(ours) and set(theirs) <= left
    assert any("removed 2 temporary file(s)" in s for s in said), said


# signals, in this process and in a child ----------------------------------------------

def test_sigterm_saves_and_train_says_so(tmp_path):
    cfg = tiny("mlm", tmp_path, max_steps=10)
    import numformer.train.run as run_module
    real = run_module.Trainer

    class Terminated(real):
        def train_step(self, batch):
            if self.state.step == 4:
                os.kill(os.getpid(), signal.SIGTERM)
            return super().train_step(batch)
    run_module.Trainer = Terminated
    try:
        summary = train(cfg, log=quiet)
    finally:
        run_module.Trainer = real
    assert summary["interrupted"] == "SIGTERM" and summary["steps"] == 5
    assert load_checkpoint(tmp_path / "mlm" / "checkpoint.npz")["meta"]["state"]["step"] == 5
    assert train(cfg, resume=True, log=quiet)["interrupted"] is None


# A child process running `numformer train`, printing "@step N" after each step.
DRIVER = """
import sys
from numformer.train.loop import Trainer
step = Trainer.train_step
def train_step(self, batch):
    out = step(self, batch)
    print(f"@step {self.state.step}", flush=True)
    return out
Trainer.train_step = train_step
from numformer.cli import main
sys.exit(main(sys.argv[1:]))
"""
CHILD_ARGS = ["train", "mlm", "--limit", "300", "--dim", "16", "--n-heads", "2", "--n-layers",
              "1", "--d-ff", "32", "--batch-size", "16", "--max-steps", "40", "--eval-every",
              "6", "--warmup", "2", "--no-progress", "--backend", "numpy", "--threads", "1"]
CHILD_ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _child(out, *extra):
    return subprocess.Popen([sys.executable, "-c", DRIVER, *CHILD_ARGS, "--out", str(out),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=CHILD_ENV)


def _read_until(proc, marker, timeout):
    """Read the child's stdout until a line equal to ``marker``; False at its end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            if not line:
                return False
            if line.strip() == marker:
                return True
    raise TimeoutError(f"no {marker!r} from the child within {timeout} s")


def _finish(proc, timeout=120):
    """Wait for the child: its exit code, its stderr and the last "@step N" it printed."""
    out, err = proc.communicate(timeout=timeout)
    steps = [int(line.split()[1]) for line in out.splitlines() if line.startswith("@step ")]
    return proc.returncode, err, (steps[-1] if steps else None)


def _final(out):
    ck = load_checkpoint(out / "checkpoint.npz")
    return ck, json.loads((out / "history.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    rc, err, _ = _finish(_child(out))
    assert rc == 0, err
    return _final(out)


def _assert_continues_exactly(out, uninterrupted):
    ck, hist = _final(out)
    ref_ck, ref_hist = uninterrupted
    assert ck["meta"]["state"]["step"] == ref_ck["meta"]["state"]["step"] == 40
    assert hist["train_loss"] == ref_hist["train_loss"]
    assert_same(ck["model"], ref_ck["model"], "final weights vs the uninterrupted run")
    assert_same(ck["optim"], ref_ck["optim"], "final optimizer state vs the uninterrupted run")


def test_sigkill_mid_run_then_resume_is_bit_equal(tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc = _child(out)
    try:
        assert _read_until(proc, "@step 15", timeout=120)
        proc.send_signal(signal.SIGKILL)
        rc, _, reached = _finish(proc)
    finally:
        proc.kill()
    assert rc == -signal.SIGKILL
    saved = load_checkpoint(out / "checkpoint.npz")["meta"]["state"]["step"]
    assert saved == (reached or 15) // 6 * 6 >= 12  # the last evaluation's (every 6 steps)
    rc, err, _ = _finish(_child(out, "--resume"))
    assert rc == 0, err
    _assert_continues_exactly(out, uninterrupted)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_saves_exits_nonzero_and_resume_continues(tmp_path, uninterrupted, sig, code):
    out = tmp_path / "run"
    proc = _child(out)
    try:
        assert _read_until(proc, "@step 9", timeout=120)
        proc.send_signal(sig)
        rc, err, reached = _finish(proc)
    finally:
        proc.kill()
    assert rc == code, err
    assert f"interrupted by {signal.Signals(sig).name}" in err
    saved = load_checkpoint(out / "checkpoint.npz")["meta"]["state"]["step"]
    assert saved == (reached or 9) < 40  # saved at the step where it stopped
    rc, err, _ = _finish(_child(out, "--resume"))
    assert rc == 0, err
    _assert_continues_exactly(out, uninterrupted)
