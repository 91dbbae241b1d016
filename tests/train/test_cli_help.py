"""``numformer train TASK --help``: every flag's help, the task's defaults and the choices,
all read from TrainConfig's field metadata; bad choices refused at parse time."""

import dataclasses

import pytest

from numformer import cli
from numformer.commands.train import task_parser
from numformer.train.config import TASK_DEFAULTS, TrainConfig


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main(["train", *argv, "--help"])
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse's wrapping undone


def _flag_help(text: str, flag: str) -> str:
    """The help of one flag: from the flag to the next flag's entry."""
    i = text.index(f" {flag} ")
    rest = text[i + len(flag) + 2:]
    nxt = [rest.find(" --" + f.name.replace("_", "-") + " ") for f in TrainConfig.fields()]
    ends = [j for j in nxt if j > 0]
    return rest[:min(ends)] if ends else rest


def test_every_setting_has_a_help_line():
    missing = [f.name for f in dataclasses.fields(TrainConfig) if not f.metadata.get("help")]
    assert missing == []


def test_classify_help_shows_its_own_defaults_and_choices(capsys):
    text = _help(capsys, "classify")
    assert text.startswith("usage: numformer train classify")
    assert "(default: 0, i.e. from the data)" in _flag_help(text, "--max-len")
    assert "(default: 4)" in _flag_help(text, "--n-heads")  # classify's, not the field's 8
    assert "default: auto" in _flag_help(text, "--keep-best")
    act = _flag_help(text, "--activation")
    assert "one of relu, gelu, gelu_tanh, silu" in act and "default: gelu" in act
    assert "imdb-rating" in _flag_help(text, "--dataset")
    assert "europarl" not in _flag_help(text, "--dataset")  # an mlm dataset
    for absent in ("--mask-prob", "--lora-rank", "--eval-data"):  # other tasks' settings
        assert f" {absent} " not in text
    assert " --text-pair-column " in text and " --pooling " in text


def test_each_task_help_holds_that_tasks_settings(capsys):
    lm = _help(capsys, "lm")
    assert " --lora-rank " in lm and " --eval-data " in lm and " --pooling " not in lm
    assert "(default: 600)" in _flag_help(lm, "--max-steps")  # lm's default
    assert "(default: 128)" in _flag_help(lm, "--max-len")
    assert _help(capsys, "--help", "lm") == lm  # the task named after --help
    mlm = _help(capsys)  # no task named: mlm, the default task
    assert mlm.startswith("usage: numformer train mlm") and " --mask-prob " in mlm
    assert "(default: 40)" in _flag_help(mlm, "--epochs")


@pytest.mark.parametrize("task", list(TASK_DEFAULTS))
def test_the_help_defaults_are_the_defaults_a_run_gets(task):
    """The default each task's help shows is the value TrainConfig.for_task gives."""
    cfg = TrainConfig.for_task(task)
    text = " ".join(task_parser(task).format_help().split())
    for name in ("dim", "batch_size", "warmup", "dropout", "optimizer", "schedule"):
        flag = "--" + name.replace("_", "-")
        shown = _flag_help(text, flag).split("(default: ")[1].split(")")[0].split(";")[0]
        assert shown == str(getattr(cfg, name)), (task, name, shown)


@pytest.mark.parametrize("flag,value,allowed", [
    ("--optimizer", "adagrad", "'adamw', 'adam', 'sgd'"),
    ("--schedule", "step", "'constant', 'linear', 'cosine'"),
    ("--pooling", "max", "'mean', 'cls'"),
    ("--on-nonfinite", "ignore", "'stop', 'skip'"),
])
def test_a_value_outside_the_choices_is_refused_at_parse_time(capsys, flag, value, allowed):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "classify", flag, value, "--out", "/nonexistent/never-made"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: invalid choice: '{value}'" in err and allowed in err


def test_a_dataset_of_another_task_is_refused_naming_this_tasks(capsys):
    assert cli.main(["train", "lm", "--dataset", "sst2", "--out", "/nonexistent/x"]) == 2
    err = capsys.readouterr().err
    assert "--dataset: unknown dataset 'sst2' for the lm task; known:" in err
