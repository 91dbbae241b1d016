"""Bad input, as a user types it: every case is a clear error naming the flag
(on the command line) or the field (in Python), never a traceback or a silent
wrong result. One table; each row holds the input and a fragment of the
message it must give.

Command-line cases run ``numformer.cli.main(argv)`` and expect exit code 2
and the fragment on stderr; ``train`` cases must fail before any data is read
(``train()`` is replaced by a function that fails the test if reached).
Python cases expect a ValueError whose message holds the fragment.
"""

import json

import numpy as np
import pytest

from numformer import nn
from numformer.cli import main
from numformer.data.tokenizers import SPECIAL_IDS, ByteTokenizer, WordTokenizer
from numformer.train import TrainConfig, train
from numformer.train.checkpoint import load_checkpoint, save_checkpoint
from numformer.train.generate import NEVER_SAMPLED, generate, never_sampled, sample_next

TINY = dict(dim=16, n_heads=2, n_layers=1, d_ff=32, batch_size=16, warmup=2, progress=False,
            epochs=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny trained runs (a few steps each) and the bad files the cases point at."""
    root = tmp_path_factory.mktemp("bad_input")
    f = {"root": root}
    for task, extra in (("mlm", dict(limit=64)), ("classify", dict(limit=64)),
                        ("lm", dict(max_len=16, max_steps=2))):
        train(TrainConfig(task=task, out=str(root / task), **TINY, **extra), log=lambda *a: None)
        f[task] = root / task
    (root / "folder").mkdir()
    f["folder"] = root / "folder"
    f["text"] = root / "text.txt"
    f["text"].write_text("some text, not a checkpoint\n" * 4)
    f["npy"] = root / "array.npz"  # an .npy file under an .npz name
    with open(f["npy"], "wb") as fh:
        np.save(fh, np.zeros(3))
    ck = load_checkpoint(f["mlm"] / "checkpoint.npz")
    f["f16_name"] = name = sorted(ck["model"])[-1]  # one tensor in float16, the rest float32
    f["f16"] = save_checkpoint(root / "f16.npz", {**ck["model"], name: ck["model"][name].astype(
        np.float16)}, ck["meta"])

    def config(name, settings):
        path = root / name
        path.write_text(settings if isinstance(settings, str) else json.dumps(settings))
        return str(path)
    f["cfg_nan_lr"] = config("nan_lr.json", '{"lr": NaN}')  # JSON as Python writes it
    f["cfg_toml_inf"] = config("inf.toml", "[train]\nweight_decay = inf\n")
    f["cfg_dataset"] = config("dataset.json", {"dataset": "foo"})
    f["cfg_wide"] = config("wide.json", {"dim": "wide"})
    f["cfg_colour"] = config("colour.json", {"colour": "red"})
    f["cfg_task"] = config("task.json", {"task": "lm"})
    f["cfg_heads"] = config("heads.json", {"n_heads": 3})
    f["cfg_frac"] = config("frac.json", {"eval_fraction": 1.5})
    return f


def _no_training(*args, **kwargs):
    raise AssertionError("training started: the error should have come before any data")


def cli(argv, capsys, monkeypatch):
    monkeypatch.setattr("numformer.train.run.train", _no_training)
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own errors (e.g. --dim abc)
        rc = e.code
    return rc, capsys.readouterr().err


# (argv, fragment of stderr); "{name}" is filled from the fixture's files
CLI_CASES = [
    # train: every setting's range, type and choices, named by its flag
    ("train --eval-fraction 1.5", "--eval-fraction: expected a number in (0, 1), got 1.5"),
    ("train --eval-fraction 0", "--eval-fraction: expected a number in (0, 1), got 0.0"),
    ("train --time-limit -1", "--time-limit: expected a finite number >= 0, got -1.0"),
    ("train --time-limit nan", "--time-limit: expected a finite number >= 0, got nan"),
    ("train --lr inf", "--lr: expected a finite number > 0, got inf"),
    ("train --lr nan", "--lr: expected a finite number > 0, got nan"),
    ("train --lr 0", "--lr: expected a finite number > 0, got 0.0"),
    ("train --lr -0.001", "--lr: expected a finite number > 0, got -0.001"),
    ("train --weight-decay nan", "--weight-decay: expected a finite number >= 0, got nan"),
    ("train --weight-decay -0.1", "--weight-decay: expected a finite number >= 0, got -0.1"),
    ("train --clip -1", "--clip: expected a finite number >= 0, got -1.0"),
    ("train --clip inf", "--clip: expected a finite number >= 0, got inf"),
    ("train --vocab-size 1", "--vocab-size: expected an integer >= 6 (the 5 special tokens"),
    ("train --vocab-size 5", "--vocab-size: expected an integer >= 6"),
    ("train --dropout 1", "--dropout: expected a number in [0, 1), got 1.0"),
    ("train --dropout -0.1", "--dropout: expected a number in [0, 1), got -0.1"),
    ("train --mask-prob 0", "--mask-prob: expected a number in (0, 1), got 0.0"),
    ("train --beta1 1", "--beta1: expected a number in [0, 1), got 1.0"),
    ("train --beta2 nan", "--beta2: expected a number in [0, 1), got nan"),
    ("train --optimizer sgd --momentum 1.5", "--momentum: expected a number in [0, 1), got 1.5"),
    ("train --label-smoothing 1", "--label-smoothing: expected a number in [0, 1), got 1.0"),
    ("train --dim 0", "--dim: expected an integer >= 1, got 0"),
    ("train --n-heads 3", "--n-heads: expected a divisor of --dim (128), got 3"),
    ("train --n-layers 0", "--n-layers: expected an integer >= 1, got 0"),
    ("train --d-ff -1", "--d-ff: expected an integer >= 1, got -1"),
    ("train --max-len 0", "--max-len: expected an integer >= 1, got 0"),
    ("train classify --max-len 1", "--max-len: expected at least 2 for classify"),
    ("train --batch-size 0", "--batch-size: expected an integer >= 1, got 0"),
    ("train --epochs 0", "--epochs: expected an integer >= 1, got 0"),
    ("train --max-steps -1", "--max-steps: expected an integer >= 0, got -1"),
    ("train --warmup -5", "--warmup: expected an integer >= 0, got -5"),
    ("train --eval-every -1", "--eval-every: expected an integer >= 0, got -1"),
    ("train --limit -1", "--limit: expected an integer >= 0, got -1"),
    ("train --seed -1", "--seed: expected an integer >= 0, got -1"),
    ("train --threads -2", "--threads: expected an integer >= 0, got -2"),
    ("train --threads 100000", "--threads: expected 0 (leave as is) or 1.."),
    ("train --min-freq 0", "--min-freq: expected an integer >= 1, got 0"),
    ("train --optimizer lion", "argument --optimizer: invalid choice: 'lion' (choose from 'adamw', 'adam', 'sgd')"),
    ("train --schedule step", "argument --schedule: invalid choice: 'step' (choose from "
                              "'constant', 'linear', 'cosine')"),
    ("train --activation swish", "argument --activation: invalid choice: 'swish' (choose from 'relu', 'gelu'"),
    ("train --positional alibi", "argument --positional: invalid choice: 'alibi' (choose from 'learned', 'sinusoidal'"),
    ("train classify --pooling max",
     "argument --pooling: invalid choice: 'max' (choose from 'mean', 'cls', 'pooler')"),
    ("train classify --pooling pooler", "--pooling: 'pooler' is a pretrained BERT's tanh pooler: "
                                        "it needs --init minilm"),
    ("train regress --pair-encoder bi", "--pair-encoder: 'bi' fine-tunes a pretrained BERT: give "
                                        "--init minilm"),
    ("train classify --pair-encoder bi", "--pair-encoder: 'bi' scores a pair by a cosine, for "
                                         "the regress task; this is classify"),
    ("train regress --init minilm --pair-encoder bi --pair-swap",
     "--pair-swap: a bi-encoder's cosine is the same in both orders"),
    ("train regress --init minilm --pair-encoder bi --regress-loss bce",
     "--regress-loss: a cosine score ('bi') is trained with the squared error of its cosine"),
    ("train regress --pair-encoder cross-cosine", "--pair-encoder: 'cross-cosine' fine-tunes a "
                                                  "pretrained BERT: give --init minilm"),
    ("train classify --pair-encoder cross-cosine", "--pair-encoder: 'cross-cosine' scores a pair "
                                                   "by a cosine, for the regress task"),
    ("train regress --init minilm --pair-encoder cross-cosine --regress-loss bce",
     "--regress-loss: a cosine score ('cross-cosine') is trained with the squared error"),
    ("train regress --init minilm --pair-encoder cross-cosine --pooling cls",
     "--pooling: 'cross-cosine' mean-pools each text of the joint encoding (the default "
     "'mean'), got 'cls'"),
    ("train regress --regress-loss cosent",
     "--regress-loss: 'cosent' ranks the cosines of --pair-encoder bi or cross-cosine; "
     "--pair-encoder is 'cross'"),
    ("train classify --regress-loss cosent", "--regress-loss: a loss of the regress task; this "
                                             "is classify"),
    ("train regress --init minilm --pair-encoder bi --regress-loss cosent --grad-accum 2",
     "--grad-accum: 'cosent' ranks the pairs of the whole batch, which micro-batches would "
     "split (expected 1, got 2)"),
    ("train regress --regress-loss rank",
     "argument --regress-loss: invalid choice: 'rank' (choose from 'mse', 'bce', 'cosent')"),
    ("train regress --pair-encoder tri",
     "argument --pair-encoder: invalid choice: 'tri' (choose from 'cross', 'bi', "
     "'cross-cosine')"),
    ("train --backend cuda", "argument --backend: invalid choice: 'cuda' (choose from '', 'numba', 'numpy')"),
    ("train --on-nonfinite ignore", "--on-nonfinite"),
    ("train --dim abc", "argument --dim: invalid int value: 'abc'"),
    ("train --lr fast", "argument --lr: invalid float value: 'fast'"),
    # train: datasets and paths, before any data is read
    ("train --dataset foo", "--dataset: unknown dataset 'foo' for the mlm task; known: '' "
                            "(embedded), europarl, imdb-unsup, text"),
    ("train classify --dataset foo", "--dataset: unknown dataset 'foo' for the classify task; "
                                     "known: '' (embedded), sst2, sst5, imdb, imdb-rating"),
    ("train lm --dataset sst2", "--dataset: unknown dataset 'sst2' for the lm task; known: '' "
                                "(embedded), text, tinyshakespeare, wikitext2"),
    ("train lm --dataset text", "--data: the 'text' dataset is read from a file; none given"),
    ("train lm --dataset text --data {folder}",
     "--data: the 'text' dataset is read from a file, got a folder: {folder}"),
    ("train --dataset text --data {folder}",  # a masked-LM reads a folder's *.txt
     "--data: expected a text file, or a folder holding *.txt files; {folder} holds none"),
    ("train classify --dataset sst2 --data {text}",
     "--data: the 'sst2' dataset is read from a folder, got a file: {text}"),
    ("train --dataset europarl --data {root}/missing",
     "--data: no such file or folder: {root}/missing"),
    ("train --data {text}", "--data: the mlm task's embedded default data reads no file; to read "
                            "{text}, set --dataset (one of europarl, imdb-unsup, text)"),
    ("train lm --dataset text --data {text} --eval-data {folder}",
     "--eval-data: the held-out text is read from a file, got a folder"),
    ("train --eval-data {text}", "--eval-data: only the lm task reads a separate held-out file"),
    ("train lm --init {mlm}", "--init: expected one of ['smollm2'] or a Llama .gguf file"),
    ("train mlm --init {mlm}", "--init: the mlm task trains from scratch"),
    ("train classify --init {root}/missing", "--init: expected a numformer run folder or "
                                             "checkpoint (.npz), a BERT folder or 'minilm'; no "
                                             "such file or folder: {root}/missing"),
    ("train classify --init {text}", "--init: expected a numformer run folder or checkpoint "
                                     "(.npz), a BERT folder or 'minilm', got the file {text}"),
    ("train classify --init {folder}", "--init: expected a numformer run folder or checkpoint "
                                       "(.npz), a BERT folder or 'minilm'; {folder} holds no "
                                       "checkpoint.npz and no config.json"),
    ("train --keep-best foo", "--keep-best: expected one of this task's metrics ['eval_loss', "
                              "'mlm_accuracy', 'perplexity'], got 'foo'"),
    ("train classify --dataset imdb --data {folder} --keep-best dev_accuracy",
     "--keep-best: expected one of this task's metrics ['test_loss', 'test_accuracy'], got "
     "'dev_accuracy'"),
    ("train --out {text}", "--out: expected a folder for the run, got a file: {text}"),
    ("train --out {text}/run", "--out: cannot make the folder {text}/run: {text} is a file"),
    # train --config: the file's own values are checked even where a flag overrides them
    ("train --config {cfg_nan_lr} --lr 0.001",
     "config file {cfg_nan_lr}: lr: expected a finite number > 0, got nan"),
    ("train --config {cfg_toml_inf} --weight-decay 0.1",
     "config file {cfg_toml_inf}: weight_decay: expected a finite number >= 0, got inf"),
    ("train --config {cfg_dataset} --dataset text --data {text}",
     "config file {cfg_dataset}: dataset: unknown dataset 'foo' for the mlm task"),
    ("train --config {cfg_wide} --dim 8", "config file {cfg_wide}: dim: expected an integer >= 1, "
                                          "got 'wide'"),
    ("train --config {cfg_frac}", "config file {cfg_frac}: eval_fraction: expected a number in "
                                  "(0, 1), got 1.5"),
    ("train --config {cfg_colour}", "unknown settings ['colour']"),
    ("train classify --config {cfg_task}", "task: the file is for 'lm', the command line trains "
                                           "'classify'"),
    ("train --config {cfg_heads}", "config file {cfg_heads}: n_heads: expected a divisor of dim "
                                   "(128), got 3"),
    ("train --config {root}/none.toml", "config file {root}/none.toml: no such file"),
    # predict, neighbors: counts and texts
    ("predict -c {classify} --top -3 fine", "--top: expected an integer >= 1, got -3"),
    ("predict -c {mlm} --top 0 'le <mask>'", "--top: expected an integer >= 1, got 0"),
    ("predict -c {classify} ''", "TEXT: expected a non-empty text, got ''"),
    ("predict -c {classify} good '  '", "TEXT 2: expected a non-empty text, got '  '"),
    ("predict -c {lm} hello",
     "holds a 'lm' model; this command needs one of ['classify', 'mlm', 'regress']"),
    ("neighbors -c {mlm} -k -4 la", "-k: expected an integer >= 1, got -4"),
    ("neighbors -c {mlm} -k 0 la", "-k: expected an integer >= 1, got 0"),
    ("neighbors -c {mlm} ''", "WORD: expected a non-empty text"),
    ("neighbors -c {lm} la", "this model's tokenizer has no word vocabulary"),
    # generate: sampling settings
    ("generate -c {lm} --temperature nan", "--temperature: expected a finite number >= 0, got nan"),
    ("generate -c {lm} --temperature inf", "--temperature: expected a finite number >= 0, got inf"),
    ("generate -c {lm} --temperature -1", "--temperature: expected a finite number >= 0, got -1.0"),
    ("generate -c {lm} --top-k 0", "--top-k: expected an integer >= 1, got 0"),
    ("generate -c {lm} --length -1", "--length: expected an integer >= 0, got -1"),
    ("generate -c {lm} --prompt ''", "--prompt: expected a non-empty text, got ''"),
    ("generate -c {lm} --seed -1", "--seed: expected an integer >= 0, got -1"),
    ("generate -c {mlm}", "holds a 'mlm' model; this command needs one of ['lm']"),
    # eval and the checkpoint files
    ("eval {text}", "{text}: corrupt or not a numformer checkpoint (not the .npz archive"),
    ("eval {npy}", "{npy}: corrupt or not a numformer checkpoint (not the .npz archive"),
    ("eval {f16}", "load_state_dict: {f16_name}: expected dtype float32 or float64, got float16"),
    ("predict -c {f16} 'le <mask>'", "expected dtype float32 or float64, got float16"),
    ("eval {root}/nothing", "no such file"),
    ("eval {mlm} --dataset foo", "--dataset: unknown dataset 'foo' for the mlm task; known:"),
    ("eval {mlm} --dataset text --data {folder}",
     "--data: expected a text file, or a folder holding *.txt files; {folder} holds none"),
    ("eval {mlm} --dataset text",
     "--data: the 'text' dataset is read from a file or folder; none given"),
    # attention, embed, similarity
    ("attention -c {mlm} --layer 5 'le parlement'", "--layer: expected -1..0, got 5"),
    ("attention -c {mlm} ''", "SENTENCE: expected a non-empty text, got ''"),
    ("attention -c {mlm} la --out {folder}", "--out: expected a file to write, got a folder"),
    ("attention -c {mlm} la --out {text}/a.png", "--out: cannot write {text}/a.png: {text} is "
                                                 "a file"),
    ("embed hello --output {folder}", "--output: expected a file to write, got a folder"),
    ("embed hello --batch-size 0", "--batch-size: expected an integer >= 1, got 0"),
    ("embed hello --show -1", "--show: expected an integer >= 0, got -1"),
    ("similarity '' b", "A: expected a non-empty text, got ''"),
]


@pytest.mark.parametrize("argv,fragment", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_a_clear_error(argv, fragment, files, capsys, monkeypatch):
    import shlex
    names = {k: str(v) for k, v in files.items()}
    rc, err = cli(shlex.split(argv.format(**names)), capsys, monkeypatch)
    fragment = fragment.format(**names)
    assert rc == 2, (rc, err)
    assert fragment in err, err
    assert "Traceback" not in err


def _tiny_lm():
    cfg = nn.ModelConfig(vocab_size=13, dim=8, n_heads=2, n_layers=1, d_ff=16, max_len=8,
                         dropout=0.0)
    return nn.CausalLM(cfg, seed=0)


def _cfg(**kw):
    return lambda: TrainConfig(**kw)


def _make_task(**kw):
    from numformer.train.tasks import make_task
    return lambda: make_task(TrainConfig(**kw), log=lambda *a: None)


def _state16():
    lin = nn.Linear(3, 4)
    return lambda: lin.load_state_dict({"weight": np.zeros((3, 4), np.float16),
                                        "bias": np.zeros(4, np.float32)})


def _split(fraction):
    from numformer.train.task_base import split_indices
    return lambda: split_indices(10, fraction, 0)


RNG = np.random.default_rng(0)
API_CASES = [
    (_cfg(dim=True), "dim: expected an integer >= 1, got True"),
    (_cfg(dim=2.0), "dim: expected an integer >= 1, got 2.0"),
    (_cfg(n_heads=False), "n_heads: expected an integer >= 1, got False"),
    (_cfg(lr="1e-3"), "lr: expected a finite number > 0, got '1e-3'"),
    (_cfg(lr=True), "lr: expected a finite number > 0, got True"),
    (_cfg(norm_first=1), "norm_first: expected true or false, got 1"),
    (_cfg(eval_fraction=1.5), "eval_fraction: expected a number in (0, 1), got 1.5"),
    (_cfg(lr=float("nan")), "lr: expected a finite number > 0, got nan"),
    (_cfg(lr=float("inf")), "lr: expected a finite number > 0, got inf"),
    (_cfg(weight_decay=float("nan")), "weight_decay: expected a finite number >= 0, got nan"),
    (_cfg(time_limit=-1.0), "time_limit: expected a finite number >= 0, got -1.0"),
    (_cfg(clip=-1.0), "clip: expected a finite number >= 0, got -1.0"),
    (_cfg(vocab_size=1), "vocab_size: expected an integer >= 6"),
    (_cfg(dataset="foo"), "dataset: unknown dataset 'foo' for the mlm task; known: '' "
                          "(embedded), europarl, imdb-unsup, text"),
    (_cfg(task="lm", dataset="imdb"), "dataset: unknown dataset 'imdb' for the lm task"),
    (_cfg(task="translate"), "task: expected one of 'mlm', 'classify', 'lm', 'regress', got 'translate'"),
    (_cfg(activation="swish"), "activation: expected one of"),
    (_cfg(pooling="max"), "pooling: expected one of 'mean', 'cls', 'pooler', got 'max'"),
    (_cfg(task="classify", pooling="pooler"), "pooling: 'pooler' is a pretrained BERT's tanh "
                                              "pooler: it needs --init minilm"),
    (_cfg(data=3), "data: expected a string, got 3"),
    (_cfg(n_heads=3), "n_heads: expected a divisor of dim (128), got 3"),
    (lambda: TrainConfig.from_dict({"lr": "x"}, source="c.json"),
     "c.json: lr: expected a finite number > 0, got 'x'"),
    (lambda: TrainConfig.from_dict({"colour": 1}), "unknown settings ['colour']"),
    (lambda: TrainConfig.for_task("lm", dim=0), "dim: expected an integer >= 1, got 0"),
    (_split(1.5), "eval_fraction: expected a number in (0, 1), got 1.5"),
    (_state16(), "load_state_dict: weight: expected dtype float32 or float64, got float16"),
    (lambda: sample_next(np.zeros((1, 4)), float("nan"), None, RNG),
     "temperature: expected a finite number >= 0, got nan"),
    (lambda: sample_next(np.zeros((1, 4)), 1.0, 0, RNG),
     "top_k: expected None or an integer >= 1, got 0"),
    (lambda: sample_next(np.zeros((1, 4)), 1.0, None, RNG, exclude=range(4)),
     "exclude: every one of the 4 ids is excluded"),
    (lambda: generate(_tiny_lm(), np.array([5, 6]), 3, temperature=float("inf")),
     "temperature: expected a finite number >= 0, got inf"),
    (lambda: generate(_tiny_lm(), np.array([5, 6]), -1), "length: expected an integer >= 0"),
    (lambda: generate(_tiny_lm(), np.array([5, 6]), 3, top_k=-2),
     "top_k: expected None or an integer >= 1, got -2"),
]


@pytest.mark.parametrize("call,fragment", API_CASES, ids=[c[1][:40] for c in API_CASES])
def test_api_bad_input_is_a_clear_error(call, fragment):
    import re
    with pytest.raises(ValueError, match=re.escape(fragment)):
        call()


def test_api_paths_name_the_field_not_the_flag(files):
    """make_task checks its paths before reading anything; Python sees field names."""
    import re
    from numformer.train.settings import ConfigError
    cases = [
        (dict(task="lm", dataset="text", data=str(files["folder"])),
         f"data: the 'text' dataset is read from a file, got a folder: {files['folder']}"),
        (dict(data=str(files["text"])),
         "data: the mlm task's embedded default data reads no file; to read "
         f"{files['text']}, set dataset (one of europarl, imdb-unsup, text)"),
        (dict(task="classify", dataset="sst5"),
         "data: the 'sst5' dataset is read from a folder; none given"),
        (dict(task="classify", init=str(files["mlm"]), pooling="pooler"),
         f"pooling: 'pooler' is a pretrained BERT's tanh pooler: it needs --init minilm (or a "
         f"BERT checkpoint), got --init '{files['mlm']}'; the other choices: mean, cls"),
    ]
    for kw, fragment in cases:
        with pytest.raises(ConfigError, match="^" + re.escape(fragment)):
            _make_task(out=str(files["root"] / "x"), **kw)()


def test_api_checkpoint_files_that_are_not_checkpoints(files):
    from numformer.train.checkpoint import CheckpointError
    for name in ("text", "npy"):
        with pytest.raises(CheckpointError, match=f"checkpoint {files[name]}: corrupt or not a "
                                                  f"numformer checkpoint"):
            load_checkpoint(files[name])


def test_metric_names_known_before_the_data_are_the_tasks_own():
    from numformer.train.task_base import metric_names
    from numformer.train.tasks import make_task
    for task in ("mlm", "classify", "lm"):
        cfg = TrainConfig(task=task, limit=64, **TINY)
        assert metric_names(cfg) == make_task(cfg, log=lambda *a: None).metric_names(), task


def test_float16_checkpoint_through_load_trained(files):
    from numformer.train.load import load_trained
    with pytest.raises(ValueError, match=f"{files['f16_name']}: expected dtype float32 or "
                                         f"float64, got float16"):
        load_trained(files["f16"])


def test_the_table_is_large_enough():
    assert len(CLI_CASES) + len(API_CASES) >= 60


def test_config_choices_are_what_the_model_accepts():
    from numformer.nn.layers import make_activation
    from numformer.train.config import ACTIVATIONS, POOLINGS, POSITIONALS
    for a in ACTIVATIONS:
        make_activation(a)
    for p in POSITIONALS:
        nn.ModelConfig(vocab_size=10, dim=8, n_heads=2, positional=p)
    for p in POOLINGS:
        nn.ModelConfig(vocab_size=10, dim=8, n_heads=2, pooling=p)


def test_valid_settings_still_pass_and_ints_become_floats():
    cfg = TrainConfig(lr=1, clip=0, eval_fraction=0.5, dataset="embedded")
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and isinstance(cfg.clip, float)
    assert TrainConfig(task="lm", dataset="tinyshakespeare", data="x").data == "x"


# generation never samples the special tokens -----------------------------------

class RiggedLM:
    """A stand-in CausalLM whose next-token logits favour the special ids by far."""

    def __init__(self, V=20, max_len=8):
        self.cfg = nn.ModelConfig(vocab_size=V, dim=8, n_heads=2, max_len=max_len)
        self.training = True
        self.rng = np.random.default_rng(0)

    def eval(self):
        self.training = False

    def train(self, mode=True):
        self.training = mode

    def new_cache(self):
        return None

    def __call__(self, ids, kv_cache=None):
        B, T = ids.shape
        z = self.rng.standard_normal((B, T, self.cfg.vocab_size))
        z[..., SPECIAL_IDS] += 50.0  # every special far more likely than any byte
        return z


@pytest.mark.parametrize("temperature,top_k", [(0.0, None), (1.0, None), (2.0, 3)])
def test_generation_never_samples_special_tokens(temperature, top_k):
    prompt = np.array([[7, 8], [9, 10]])
    out = generate(RiggedLM(), prompt, 40, temperature, top_k, use_cache=False)
    assert not np.isin(out[:, 2:], NEVER_SAMPLED).any(), out  # pad, mask, cls, sep by default
    out = generate(RiggedLM(), prompt, 40, temperature, top_k, use_cache=False,
                   exclude=never_sampled(ByteTokenizer()))
    assert out[:, 2:].min() >= len(SPECIAL_IDS), out  # bytes only
    rigged = generate(RiggedLM(), prompt, 40, temperature, top_k, use_cache=False, exclude=())
    assert np.isin(rigged[:, 2:], SPECIAL_IDS).all()  # the rig works: without exclusion


def test_never_sampled_by_tokenizer():
    assert never_sampled(ByteTokenizer()) == (0, 1, 2, 3, 4)
    word = WordTokenizer.build(["a b c"])
    assert set(never_sampled(word)) == {word.pad_id, word.mask_id, word.cls_id, word.sep_id}
    assert word.unk_id not in never_sampled(word)


def test_sample_next_excluded_ids_have_no_chance_even_at_u_zero():
    class Zero:
        def random(self, n):
            return np.zeros(n)
    logits = np.array([[5.0, 1.0, 0.0]])
    assert sample_next(logits, 1.0, None, Zero(), exclude=[0])[0] == 1
    assert sample_next(logits, 0.0, None, Zero(), exclude=[0])[0] == 1


def test_generate_command_output_has_no_special_token(files, capsys):
    assert main(["generate", "-c", str(files["lm"]), "--prompt", "ROMEO:", "--length", "200",
                 "--temperature", "2.0", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ROMEO:")
    assert not any(s in out for s in ("<pad>", "<unk>", "<mask>", "<cls>", "<sep>")), out
