"""What the three training tasks share: the model configuration from a
TrainConfig, tokenizers saved in and restored from checkpoints, how a
classifier encodes one text, seeded splits and lazily built epochs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from numformer import nn
from numformer.data.tokenizers import ByteTokenizer, WordTokenizer
from numformer.train.config import DATASETS, TrainConfig
from numformer.train.settings import ConfigError

EVAL_BATCH = 64


def model_config(cfg: TrainConfig, vocab_size: int, n_classes: int = 2,
                 type_vocab_size: int = 0) -> nn.ModelConfig:
    """The ModelConfig of a run: the classic stack its flags describe, or with
    ``cfg.arch`` that family's preset (numformer.nn.ARCHITECTURES) at its sizes."""
    sizes = dict(vocab_size=vocab_size, dim=cfg.dim, n_heads=cfg.n_heads, n_layers=cfg.n_layers,
                 d_ff=cfg.d_ff, max_len=cfg.max_len, dropout=cfg.dropout,
                 tie_weights=cfg.tie_weights, n_classes=n_classes, pooling=cfg.pooling,
                 n_kv_heads=cfg.n_kv_heads, type_vocab_size=type_vocab_size)
    if cfg.arch:
        return nn.ModelConfig.for_arch(cfg.arch, **sizes)
    return nn.ModelConfig(**sizes, norm_first=cfg.norm_first, activation=cfg.activation,
                          positional=cfg.positional)


def tokenizer_meta(tok) -> dict:
    if isinstance(tok, ByteTokenizer):
        return {"kind": "byte"}
    if isinstance(tok, WordTokenizer):
        return {"kind": "word", "tokens": tok.tokens()}
    if hasattr(tok, "merges"):  # a pretrained byte-level BPE (SmolLM2): all it needs, inline
        return {"kind": "bpe", "settings": tok.settings()}
    return {"kind": "wordpiece", "settings": tok.settings()}


def tokenizer_from_meta(d: dict):
    if d.get("kind") == "byte":
        return ByteTokenizer()
    if d.get("kind") == "word":
        return WordTokenizer(d["tokens"])
    if d.get("kind") == "wordpiece":
        from numformer.pretrained.wordpiece import WordPieceTokenizer
        return WordPieceTokenizer(**d["settings"])
    if d.get("kind") == "bpe":
        from numformer.pretrained.bpe import BPETokenizer
        return BPETokenizer.from_settings(d["settings"])
    raise ValueError(f"checkpoint: unknown tokenizer {d.get('kind')!r}")


def encode_example(tok, text: str, max_len: int, add_cls: bool) -> np.ndarray:
    """One text's ids as a classifier reads them: WordPiece's [CLS] pieces [SEP]
    (a pretrained BERT), else <cls> and the tokens; at most max_len ids."""
    if hasattr(tok, "settings"):  # WordPiece
        return np.asarray(tok.encode(text, max_length=max_len), dtype=np.int64)
    ids = tok.encode(text)
    if add_cls:
        ids = np.concatenate([np.array([tok.cls_id], dtype=np.int64), ids])
    return ids[:max_len]


def encode_pair(tok, text: str, pair: str, max_len: int):
    """ids and token types of a pair as a classifier reads it: WordPiece's
    ``[CLS] a [SEP] b [SEP]``, else ``<cls> a <sep> b``; types 0 up to the first
    separator (included), 1 after. The longer text is cut first to fit max_len."""
    if hasattr(tok, "settings"):  # WordPiece
        ids, types = tok.encode_pair(text, pair, max_length=max_len)
        return np.asarray(ids, dtype=np.int64), np.asarray(types, dtype=np.int64)
    a, b = list(tok.encode(text)), list(tok.encode(pair))
    while len(a) + len(b) > max_len - 2 and (a or b):
        (a if len(a) > len(b) else b).pop()
    ids = np.array([tok.cls_id, *a, tok.sep_id, *b], dtype=np.int64)
    types = np.zeros(len(ids), dtype=np.int64)
    types[len(a) + 2:] = 1
    return ids, types


FILE_FIELDS = ("train", "dev", "test", "text_column", "label_column", "text_pair_column")


def _check_files(cfg: TrainConfig) -> None:
    """dataset 'file': one training path (data or train), dev/test files that exist;
    the file settings only with it."""
    if cfg.dataset != "file":
        for name in FILE_FIELDS:
            if name == "text_column" and cfg.task == "mlm" and cfg.dataset == "text":
                continue  # the field of a JSON-lines file a masked-LM reads
            if getattr(cfg, name):
                raise ConfigError(name, f"read only when dataset is 'file' (a CSV, TSV, "
                                        f"JSON-lines file or a folder); dataset is "
                                        f"{cfg.dataset!r}",
                                  refs=("dataset",))
        return
    if cfg.data and cfg.train:
        raise ConfigError("train", f"give the training file once, as data or here; got "
                                   f"both ({cfg.data}, {cfg.train})", refs=("data",))
    if not (cfg.data or cfg.train):
        raise ConfigError("data", f"the {cfg.task} task reads a CSV, TSV or JSON-lines file "
                                  f"or a folder of class folders; none given (give it here, "
                                  f"or as train)", refs=("train",))
    name = "train" if cfg.train else "data"
    _check_path(name, Path(cfg.train or cfg.data), "file or folder", "the training data")
    for name in ("dev", "test"):
        if getattr(cfg, name):
            _check_path(name, Path(getattr(cfg, name)), "file or folder", f"the {name} data")


def need_data(cfg: TrainConfig) -> Path:
    """The path of ``cfg.dataset`` (check_inputs has looked at it)."""
    if cfg.dataset == "file" and cfg.train:
        return Path(cfg.train)
    if not cfg.data:
        kind = DATASETS.get(cfg.task, {}).get(cfg.dataset) or "file or folder"
        raise ConfigError("data", f"the {cfg.dataset!r} dataset is read from a {kind}; none "
                                  f"given")
    return Path(cfg.data)


def _check_path(name: str, path: Path, kind: str, what: str) -> None:
    if not path.exists():
        raise ConfigError(name, f"no such file or folder: {path} ({what} is read from a "
                                f"{kind})")
    if kind == "file" and path.is_dir():
        raise ConfigError(name, f"{what} is read from a file, got a folder: {path}")
    if kind == "folder" and not path.is_dir():
        raise ConfigError(name, f"{what} is read from a folder, got a file: {path}")


def _check_out(out: str) -> None:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError("out", f"expected a folder for the run, got a file: {path}")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError("out", f"cannot make the folder {path}: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError("out", f"cannot make or write the folder {path}: {parent} is not "
                                 f"writable")


def metric_names(cfg: TrainConfig) -> list[str]:
    """The names of the metrics the task's evaluate() returns (its metric_names())."""
    if cfg.task == "mlm":
        return ["eval_loss", "mlm_accuracy", "perplexity"]
    if cfg.task == "lm":
        return ["eval_loss", "bits_per_byte", "bits_per_char"]
    splits = ("test",) if cfg.dataset in ("imdb", "imdb-rating") else ("dev", "test")
    if cfg.task == "regress":
        return [f"{s}_{m}" for s in splits for m in ("loss", "pearson", "spearman")]
    return [f"{s}_{m}" for s in splits for m in ("loss", "accuracy")]


def _check_init(path: Path) -> None:
    what = "a numformer run folder or checkpoint (.npz), a BERT folder or 'minilm'"
    if not path.exists():
        raise ConfigError("init", f"expected {what}; no such file or folder: {path}")
    if path.is_file() and path.suffix != ".npz":
        raise ConfigError("init", f"expected {what}, got the file {path}")
    if path.is_dir() and not any((path / n).is_file() for n in
                                 ("checkpoint.npz", "config.json")):
        raise ConfigError("init", f"expected {what}; {path} holds no checkpoint.npz and no "
                                  f"config.json")


LM_INITS = ("smollm2",)


def _check_lm_init(init: str) -> None:
    what = f"one of {list(LM_INITS)} or a Llama .gguf file"
    if init in LM_INITS:
        return
    path = Path(init)
    if path.suffix != ".gguf":
        raise ConfigError("init", f"expected {what}, got {init!r}")
    if not path.is_file():
        raise ConfigError("init", f"expected {what}; no such file: {path}")


def _check_threads(n: int) -> None:
    try:
        from numba import config
    except ImportError:  # the NumPy backend: threads is left to BLAS
        return
    if n > config.NUMBA_NUM_THREADS:
        raise ConfigError("threads", f"expected 0 (leave as is) or 1..{config.NUMBA_NUM_THREADS} "
                                     f"(NUMBA_NUM_THREADS), got {n}")


def check_inputs(cfg: TrainConfig, out: bool = False) -> None:
    """What can be checked before any data is read (ConfigError naming the field):
    the dataset's path is given when it needs one (and only then) and is a file or
    a folder as the dataset reads it; ``eval_data`` is an lm's file; ``init`` is a
    classifier's and is there; ``keep_best`` is one of the task's metrics; with
    ``out``, the run folder can be made there."""
    kinds = DATASETS[cfg.task]
    kind = kinds[cfg.dataset]
    if kind is None and cfg.data:
        named = ", ".join(n for n, k in kinds.items() if k)
        raise ConfigError("data", f"the {cfg.task} task's embedded default data reads no file; "
                                  f"to read {cfg.data}, set dataset (one of {named})",
                          refs=("dataset",))
    _check_files(cfg)
    if cfg.task == "mlm" and cfg.dataset == "text" and cfg.data and Path(cfg.data).is_dir() \
            and not any(Path(cfg.data).rglob("*.txt")):
        raise ConfigError("data", f"expected a text file, or a folder holding *.txt files; "
                                  f"{cfg.data} holds none")
    if kind is not None and cfg.dataset != "file":
        _check_path("data", need_data(cfg), kind, f"the {cfg.dataset!r} dataset")
    if cfg.eval_data:
        if cfg.task != "lm":
            raise ConfigError("eval_data", f"only the lm task reads a separate held-out file; "
                                           f"this is {cfg.task}")
        _check_path("eval_data", Path(cfg.eval_data), "file", "the held-out text")
    if cfg.init and cfg.task == "mlm":
        raise ConfigError("init", "the mlm task trains from scratch; init is for classify and "
                                  "regress (a numformer run or a BERT) and lm (a pretrained "
                                  "LLM)")
    if cfg.init and cfg.task == "lm":
        _check_lm_init(cfg.init)
    elif cfg.init and cfg.init not in ("minilm", "default"):
        _check_init(Path(cfg.init))
    if cfg.keep_best and cfg.keep_best != "auto" and cfg.keep_best not in metric_names(cfg):
        raise ConfigError("keep_best", f"expected one of this task's metrics "
                                       f"{metric_names(cfg)}, got {cfg.keep_best!r}")
    if cfg.threads:
        _check_threads(cfg.threads)
    if out:
        _check_out(cfg.out)


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded train / held-out split."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError("eval_fraction", f"expected a number in (0, 1), got {fraction}")
    order = np.random.default_rng([seed, 991]).permutation(n)
    k = max(1, int(round(n * fraction)))
    return np.sort(order[k:]), np.sort(order[:k])


class LazyEpoch:
    """A sequence of batches built on access (so a resumed epoch skips cheaply)."""

    def __init__(self, plan, build):
        self.plan = plan
        self.build = build

    def __len__(self):
        return len(self.plan)

    def __getitem__(self, i):
        return self.build(i, self.plan[i])
