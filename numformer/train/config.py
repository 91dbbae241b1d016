"""The configuration of a training run: one dataclass, set from defaults, a
TOML or JSON file, and command-line flags (flags win over the file)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

TASKS = ("mlm", "classify", "lm")

# What ``numformer train TASK`` starts from (TrainConfig.for_task): the
# masked-LM is the BERT-from-scratch article's setting; the rest were chosen
# so that each runs in a few minutes on the embedded data.
TASK_DEFAULTS = {
    "mlm": {"out": "runs/mlm", "epochs": 40, "lr": 1e-3},
    "classify": {"out": "runs/classify", "max_len": 64, "epochs": 4, "n_heads": 4, "lr": 5e-4},
    "lm": {"out": "runs/lm", "max_len": 128, "n_heads": 4, "n_layers": 4, "norm_first": True,
           "max_steps": 600, "tie_weights": False, "dropout": 0.0, "weight_decay": 0.1},
}


@dataclass
class TrainConfig:
    task: str = "mlm"                 # mlm | classify | lm
    # data
    dataset: str = ""                 # "" = the task's embedded default; see numformer.train.tasks
    data: str = ""                    # a path for datasets read from files
    max_len: int = 20                 # T, tokens per sequence (incl. <cls>)
    vocab_size: int = 40000           # upper bound on the word vocabulary
    min_freq: int = 1
    eval_fraction: float = 0.1        # held out when the dataset has no test split
    eval_data: str = ""               # lm: a separate held-out text file (else the tail)
    limit: int = 0                    # use only the first N training examples (0 = all)
    # model
    dim: int = 128
    n_heads: int = 8
    n_layers: int = 2
    d_ff: int = 512
    dropout: float = 0.1
    norm_first: bool = False
    activation: str = "gelu"
    positional: str = "learned"
    pooling: str = "mean"
    tie_weights: bool = True
    init: str = ""                    # classify: a numformer run (its encoder) or a BERT folder
                                      # ("minilm": the installed all-MiniLM-L6-v2)
    # optimisation
    optimizer: str = "adamw"          # adamw | adam | sgd
    lr: float = 1e-3
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    momentum: float = 0.9             # sgd
    warmup: int = 100                 # steps
    schedule: str = "cosine"          # constant | linear | cosine
    clip: float = 1.0                 # max global gradient norm (0 = off)
    label_smoothing: float = 0.0
    batch_size: int = 32
    epochs: int = 1
    max_steps: int = 0                # train this many steps, over as many epochs as that
                                      # takes (0 = epochs decide)
    time_limit: float = 0.0           # minutes of training (0 = none)
    eval_every: int = 0               # steps between evaluations (0 = each epoch)
    keep_best: str = ""               # an evaluation metric (e.g. dev_accuracy): keep the
                                      # weights where it was best (best.npz), report those
    mask_prob: float = 0.15           # mlm
    # run
    seed: int = 0
    out: str = "runs/default"
    backend: str = ""                 # numba | numpy ("" = the current one)
    threads: int = 0                  # 0 = leave as is
    progress: bool = True
    overwrite: bool = False           # a new run may replace the run already in out/
    on_nonfinite: str = "stop"        # a NaN/inf gradient: stop (default) | skip the update

    def __post_init__(self):
        if self.on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite (--on-nonfinite): expected stop or skip, "
                             f"got {self.on_nonfinite!r}")
        if self.task not in TASKS:
            raise ValueError(f"task: expected one of {TASKS}, got {self.task!r}")
        for name in ("max_len", "vocab_size", "dim", "n_heads", "n_layers", "d_ff",
                     "batch_size", "epochs", "min_freq"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        for name in ("max_steps", "eval_every", "warmup", "limit", "threads"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {v!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {self.dropout}")
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"mask_prob: expected a value in (0, 1), got {self.mask_prob}")
        if self.optimizer not in ("adamw", "adam", "sgd"):
            raise ValueError(f"optimizer: expected adamw, adam or sgd, got {self.optimizer!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a positive number, got {self.lr}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def for_task(cls, task: str, **settings) -> "TrainConfig":
        """The task's defaults (TASK_DEFAULTS) with ``settings`` on top."""
        if task not in TASKS:
            raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
        return cls.from_dict({**TASK_DEFAULTS[task], **settings, "task": task})

    @classmethod
    def fields(cls) -> list:
        return list(dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "TrainConfig":
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"{source}: unknown settings {unknown}; known: {sorted(names)}")
        kwargs = {}
        for k, v in d.items():
            want = type(getattr(cls, k)) if hasattr(cls, k) else names[k].type
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                raise ValueError(f"{source}: {k}: expected {want.__name__}, got {v!r}")
            kwargs[k] = v
        return cls(**kwargs)


def read_config_file(path) -> dict:
    """Settings from a .toml or .json file (a flat table; a [train] table in TOML
    is also accepted)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path}: no such file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"config file {path}: line {e.lineno}: {e.msg}") from None
    elif path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            d = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"config file {path}: {e}") from None
        d = d.get("train", d)
    else:
        raise ValueError(f"config file {path}: expected a .toml or .json file")
    if not isinstance(d, dict):
        raise ValueError(f"config file {path}: expected a table of settings")
    return d


@dataclass
class RunState:
    """Where a run is: saved in checkpoints so --resume continues exactly."""
    step: int = 0
    epoch: int = 0
    batch: int = 0                    # index of the next batch within the epoch
    seconds: float = 0.0              # training time so far
    history: dict = field(default_factory=lambda: {"step": [], "train_loss": [],
                                                   "eval_step": []})
