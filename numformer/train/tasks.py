"""The three training tasks: masked-LM, classification, causal LM.

A task turns a TrainConfig into data, a tokenizer and a model, and gives the
training loop (numformer.train.loop) what it needs:

    steps_per_epoch()        batches in one epoch
    model_config()           the model's configuration (saved; compared on --resume)
    train_batches(epoch)     that epoch's batches, a sequence built lazily,
                             fully determined by (seed, epoch, batch index)
    loss_and_backward(b, weight=1.0)
                             forward, loss and backward of one batch -> (loss, tokens);
                             weight scales the loss's gradient (a data-parallel part,
                             numformer.distributed; the loss is a mean over the batch's
                             targets, counted by distributed.loss_count)
    evaluate()               held-out metrics (a dict; numbers are plotted)
    checkpoint_meta()        what a checkpoint needs besides the weights
                             (tokenizer, class names) to be used on its own
    report(out)              the outputs a user looks at, after training

Datasets (``--dataset``; ``--data PATH`` where a file or folder is read;
numformer.train.config.DATASETS is the list the configuration checks):
    mlm       "" (embedded Europarl French), europarl, imdb-unsup, text
    classify  "" (embedded SST-2), sst2, sst5 (a folder of stsa.* files), imdb,
              imdb-rating
    lm        "" (embedded tinyshakespeare), text, tinyshakespeare, wikitext2
    classify  file: the user's CSV, TSV, JSON lines or folder of class folders
              (numformer.data.tabular; chosen when --data or --train is given
              without --dataset), with --dev/--test, columns and text pairs
    regress   file (the only one): a score per text or pair (regress_task)

The masked-LM and classification tasks are here, the causal LM in
``lm_task``, what they share in ``task_base``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from numformer import nn
from numformer.data import embedded
from numformer.data.batching import collate, plan_batches
from numformer.data.datasets import load_europarl, load_sst2, load_sst5, load_text
from numformer.data.imdb import RATINGS, by_rating, load_imdb
from numformer.data.masking import mask_tokens, word_dropout
from numformer.data.tokenizers import WordTokenizer
from numformer.train import metrics as M
from numformer.train.auto import MAX_LEN_CAP, resolve, token_counts
from numformer.train.config import POOLINGS, PRETRAINED_POOLINGS, TrainConfig, known_datasets
from numformer.train.lm_task import LMTask
from numformer.train.settings import ConfigError
from numformer.train.task_base import (EVAL_BATCH, LazyEpoch, check_inputs, encode_example,
                                       encode_pair, model_config, need_data, split_indices,
                                       tokenizer_meta)


# masked-LM ----------------------------------------------------------------

class MLMTask:
    """BERT-style masked-LM: 15% of tokens chosen, 80/10/10, logits only there."""

    def __init__(self, cfg: TrainConfig, log=print, tokenizer=None):
        self.cfg = cfg
        texts = self._texts(cfg)
        if cfg.limit:
            texts = texts[:cfg.limit]
        train_idx, eval_idx = split_indices(len(texts), cfg.eval_fraction, cfg.seed)
        self.tokenizer = tokenizer or WordTokenizer.build(
            (texts[i] for i in train_idx), max_size=cfg.vocab_size, min_freq=cfg.min_freq)
        self.train = self._segments([texts[i] for i in train_idx])
        self.held_out = self._segments([texts[i] for i in eval_idx])
        if not self.train or not self.held_out:
            raise ValueError(f"dataset {self.name!r}: too little text to train and evaluate "
                             f"({len(self.train)} / {len(self.held_out)} segments)")
        self.model = nn.MaskedLM(model_config(cfg, self.tokenizer.vocab_size), seed=cfg.seed)
        self.loss = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self._eval_batches = self._masked_epoch(self.held_out, rng_key=(cfg.seed, 7777),
                                                shuffle=False)
        log(f"masked-LM on {self.name}: {len(self.train)} training and {len(self.held_out)} "
            f"held-out segments of up to {cfg.max_len} tokens, vocabulary "
            f"{self.tokenizer.vocab_size}, model {self.model.num_parameters():,} parameters")

    def _texts(self, cfg) -> list[str]:
        ds = cfg.dataset
        if ds in ("", "embedded"):
            self.name = "embedded Europarl French (2,994 non-empty lines)"
            return embedded.europarl_fr(skip_empty=True)
        path = need_data(cfg)
        self.name = f"{ds} ({path})"
        if ds == "europarl":
            return load_europarl(path, skip_empty=True)
        if ds == "imdb-unsup":
            return load_imdb(path, "unsup").texts
        if ds == "text":  # a text file, a folder of *.txt, or a JSON-lines field
            if path.is_dir() or path.suffix in (".jsonl", ".ndjson", ".gz") or cfg.text_column:
                from numformer.data.user_data import read_texts
                return read_texts(path, cfg.text_column)
            return [line for line in load_text(path).splitlines() if line.strip()]
        raise ConfigError("dataset", f"unknown dataset {ds!r} for the mlm task; known: "
                                     f"{known_datasets('mlm')}")

    def _segments(self, texts) -> list[np.ndarray]:
        """Encoded texts cut into pieces of at most max_len tokens (no <cls> in MLM)."""
        T = self.cfg.max_len
        out = []
        for ids in self.tokenizer.encode_batch(texts):
            out.extend(ids[i:i + T] for i in range(0, len(ids), T) if len(ids[i:i + T]) >= 2)
        return out

    def _masked_epoch(self, seqs, rng_key, shuffle=True):
        cfg = self.cfg
        plan = plan_batches([len(s) for s in seqs], cfg.batch_size, np.random.default_rng(rng_key),
                            shuffle=shuffle)

        def build(i, idx):
            ids, km = collate([seqs[j] for j in idx], self.tokenizer.pad_id)
            return mask_tokens(ids, km, np.random.default_rng([*rng_key, i]),
                               vocab_size=self.tokenizer.vocab_size, prob=cfg.mask_prob)
        return LazyEpoch(plan, build)

    def model_config(self) -> dict:
        return self.model.cfg.to_dict()

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train) / self.cfg.batch_size)

    def train_batches(self, epoch: int):
        return self._masked_epoch(self.train, rng_key=(self.cfg.seed, epoch))

    def loss_and_backward(self, b, weight: float = 1.0) -> tuple[float, int]:
        """``weight``: the upstream gradient of the loss (a data-parallel part's share)."""
        logits = self.model(b.ids, b.key_mask, b.positions)  # (N, V)
        loss = float(self.loss(logits, b.targets))
        self.model.backward(self.loss.backward(weight))
        return loss, int(b.key_mask.sum())

    def metric_names(self) -> list[str]:
        return ["eval_loss", "mlm_accuracy", "perplexity"]

    def evaluate(self) -> dict:
        nll = correct = count = 0.0
        for b in self._eval_batches:
            logits = self.model(b.ids, b.key_mask, b.positions)  # (N, V)
            n = len(b.targets)
            nll += float(self.loss(logits, b.targets)) * n
            correct += float((logits.argmax(-1) == b.targets).sum())
            count += n
        mean = nll / count
        return {"eval_loss": mean, "mlm_accuracy": correct / count,
                "perplexity": M.perplexity(mean)}

    def checkpoint_meta(self) -> dict:
        return {"tokenizer": tokenizer_meta(self.tokenizer)}

    def report(self, out: Path, log=print) -> dict:
        from numformer.train import outputs
        E = self.model.body.tok.weight.value
        words = self.tokenizer.tokens()
        vec, meta = outputs.save_projector(E, words, out)
        log(f"embedding for the TensorFlow projector: {vec} and {meta}")
        not_words = [w for w in words if not any(c.isalnum() for c in w)]
        frequent = [w for w in words[self.tokenizer.n_special:] if w.isalpha() and len(w) > 2][:6]
        log("nearest neighbours (cosine) of frequent words in the learned embedding:")
        for w in frequent:
            near = outputs.nearest_neighbors(E, words, w, k=6, exclude=not_words)
            log(f"  {w:>12}: " + ", ".join(f"{n} ({s:.2f})" for n, s in near))
        return {"projector_vectors": str(vec), "projector_metadata": str(meta)}


# classification --------------------------------------------------------------

BERT_RUN_CLASSES = ("BertClassifier", "BertBiEncoder", "BertCrossCosine")


def init_kind(init: str) -> str:
    """What ``--init`` names: "" (nothing), "numformer" (a run folder or checkpoint
    file of numformer holding its own Transformer) or "bert" (a Hugging Face BERT
    folder, "minilm" for the installed all-MiniLM-L6-v2, or a numformer run that
    fine-tuned a BERT: its encoder and WordPiece vocabulary are used)."""
    if not init:
        return ""
    path = Path(init)
    if path.suffix == ".npz" or (path / "checkpoint.npz").is_file():
        from numformer.train.load import checkpoint_meta
        return "bert" if checkpoint_meta(init).get("model_class") in BERT_RUN_CLASSES \
            else "numformer"
    return "bert"


def bert_init(init: str):
    """``(BertModel, WordPieceTokenizer)`` of a "bert" ``--init``: a BERT folder,
    'minilm', or the encoder of a numformer run that fine-tuned one (a cross- or
    bi-encoder; its head is left behind)."""
    from numformer.pretrained import load_bert
    path = Path(init)
    if path.suffix == ".npz" or (path / "checkpoint.npz").is_file():
        from numformer.train.load import load_trained
        run = load_trained(init)
        return run.model.bert, run.tokenizer
    return load_bert(None if init in ("minilm", "default") else init)


def classifier_from_run(cfg: TrainConfig, n_classes: int, tokenizer=None, types: int = 0):
    """A Classifier whose embeddings and encoder come from a numformer run (any of
    its models: the ``body`` weights are shared by name). The architecture is the
    run's; pooling, dropout and the class count are this run's; ``types`` (2 for
    text pairs) adds token-type embeddings (new, random) when the run had none."""
    from numformer.train.load import load_trained
    run = load_trained(cfg.init)
    body = {k: v for k, v in run.model.state_dict().items() if k.startswith("body.")}
    if not body:
        raise ValueError(f"--init {cfg.init}: the model holds no encoder ('body.*') weights")
    mc = dict(run.model.cfg.to_dict(), n_classes=n_classes, pooling=cfg.pooling,
              dropout=cfg.dropout)
    new_types = types > mc.get("type_vocab_size", 0)
    if new_types:
        mc["type_vocab_size"] = types
    if cfg.max_len > mc["max_len"]:
        raise ValueError(f"max_len: expected at most {mc['max_len']} (the positions of "
                         f"--init {cfg.init}), got {cfg.max_len}")
    model = nn.Classifier(nn.ModelConfig.from_dict(mc), seed=cfg.seed)
    model.load_state_dict(body, strict=False)
    missing = {k for k, _ in model.named_parameters() if k.startswith("body.")
               and not (new_types and k.startswith("body.type."))} - set(body)
    if missing:
        raise ValueError(f"--init {cfg.init}: encoder weights missing: {sorted(missing)}")
    return tokenizer or run.tokenizer, model


class ClassifyTask:
    """Sequence classification: <cls> + tokens, pooled, a linear head."""

    what = "classification"

    def __init__(self, cfg: TrainConfig, log=print, tokenizer=None):
        self.cfg = cfg
        self.data_report = []
        self.init_kind = init_kind(cfg.init)
        if cfg.pooling in PRETRAINED_POOLINGS and self.init_kind != "bert":
            raise ConfigError("pooling", f"'{cfg.pooling}' is a pretrained BERT's tanh pooler: "
                                         f"it needs --init minilm (or a BERT checkpoint), got "
                                         f"--init {cfg.init!r}; the other choices: "
                                         f"{', '.join(POOLINGS)}", refs=("init",))
        train, evals, self.class_names = self._data(cfg)
        if cfg.limit:
            train.texts, train.labels = train.texts[:cfg.limit], train.labels[:cfg.limit]
            if getattr(train, "pairs", None) is not None:
                train.pairs = train.pairs[:cfg.limit]
        self.pairs = getattr(train, "pairs", None) is not None  # two texts an example
        if cfg.pair_swap and not self.pairs:
            raise ConfigError("pair_swap", "expected text pairs (a second text column, or "
                                           "--text-pair-column): it swaps the two texts of "
                                           "each pair; this data has one text an example",
                              refs=("text_pair_column",))
        self.n_classes = train.n_classes  # the model's outputs (1 for a regression)
        for line in self.data_report:
            log(line)

        def choose(cap):  # the settings left to the data (numformer.train.auto)
            pairs = getattr(train, "pairs", None)
            resolve(cfg, counts=lambda: token_counts(self._untruncated, train.texts, pairs,
                                                     cfg.seed),
                    n_train=len(train.texts), start=self.init_kind or "scratch", cap=cap,
                    dev_metric=(("dev_spearman" if self.what == "regression" else
                                 "dev_accuracy") if "dev" in evals else None), log=log)
        if self.init_kind == "bert":  # fine-tune a pretrained BERT with its WordPiece vocabulary
            from numformer.pretrained import BertClassifier
            bert, wordpiece = bert_init(cfg.init)
            self.tokenizer = tokenizer or wordpiece
            choose(bert.cfg.max_position_embeddings)
            if cfg.pair_encoder != "cross":  # the pair scored by a cosine
                from numformer.pretrained import BertBiEncoder, BertCrossCosine
                if not self.pairs:
                    raise ConfigError("pair_encoder", f"{cfg.pair_encoder!r} scores text pairs; "
                                                      f"this data has one text an example "
                                                      f"(give --text-pair-column)",
                                      refs=("text_pair_column",))
                self.model = (BertBiEncoder(bert, pooling=cfg.pooling)  # each text alone
                              if cfg.pair_encoder == "bi" else BertCrossCosine(bert))
            else:
                self.model = BertClassifier(bert, self.n_classes, pooling=cfg.pooling,
                                            dropout=cfg.dropout, seed=cfg.seed)
            self.model.train()
        elif cfg.pair_encoder != "cross":
            raise ConfigError("pair_encoder", f"{cfg.pair_encoder!r} fine-tunes a pretrained BERT "
                                              f"(--init minilm or a BERT checkpoint); --init "
                                              f"{cfg.init} is a numformer run", refs=("init",))
        elif self.init_kind == "numformer":  # the encoder of a numformer run (e.g. masked-LM)
            self.tokenizer, self.model = classifier_from_run(cfg, self.n_classes, tokenizer,
                                                             2 if self.pairs else 0)
            choose(self.model.cfg.max_len)
        else:
            texts = train.texts + (train.pairs if self.pairs else [])
            self.tokenizer = tokenizer or WordTokenizer.build(
                texts, max_size=cfg.vocab_size, min_freq=cfg.min_freq)
            choose(MAX_LEN_CAP)
            self.model = nn.Classifier(model_config(cfg, self.tokenizer.vocab_size,
                                                    self.n_classes, 2 if self.pairs else 0),
                                       seed=cfg.seed)
        self.train_ids, self.train_types = self.encode(train.texts, getattr(train, "pairs", None))
        self.train_labels = train.labels
        if cfg.pair_swap:  # each pair twice: (a, b) and (b, a), the same label
            ids, types = self.encode(train.pairs, train.texts)
            self.train_ids, self.train_types = self.train_ids + ids, self.train_types + types
            self.train_labels = np.concatenate([np.asarray(train.labels)] * 2)
        self.evals, self.eval_types, self.eval_swapped = {}, {}, {}
        for name, d in evals.items():
            ids, types = self.encode(d.texts, getattr(d, "pairs", None))
            self.evals[name], self.eval_types[name] = (ids, d.labels), types
            if cfg.pair_swap:
                self.eval_swapped[name] = self.encode(d.pairs, d.texts)
        self.loss = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.last_confusion = {}
        if self.data_report:
            from numformer.data.user_data import count_lines
            for line in count_lines({"train": train, **evals},
                                    "regress" if self.what == "regression" else "classify"):
                log(line)
        log(f"{self.what} on {self.name}: {len(self.train_ids)} training examples"
            f"{' (text pairs)' if self.pairs else ''}, "
            f"{', '.join(f'{k} {len(v[0])}' for k, v in self.evals.items())}; {self.n_classes} "
            f"{'output' if self.what == 'regression' else 'classes'}; vocabulary "
            f"{self.tokenizer.vocab_size}; model "
            f"{self.model.num_parameters():,} parameters"
            + (f" (initialised from {cfg.init})" if cfg.init else ""))

    def _data(self, cfg):
        ds = cfg.dataset
        if ds == "file":  # the user's CSV, TSV, JSON lines or folder (numformer.data.tabular)
            from numformer.data.user_data import load_labelled
            path = need_data(cfg)
            self.name = str(path)
            train, evals, names, self.data_report = load_labelled(
                path, cfg.dev, cfg.test, kind="regress" if cfg.task == "regress" else "classify",
                fmt=cfg.format, header=cfg.header, text_column=cfg.text_column,
                label_column=cfg.label_column, pair_column=cfg.text_pair_column,
                eval_fraction=cfg.eval_fraction, seed=cfg.seed)
            if cfg.task != "regress":
                self.data_report.append(f"classes ({len(names)}, sorted): {', '.join(names)}")
            return train, evals, names
        if ds in ("", "embedded"):
            self.name = "embedded SST-2"
            return (embedded.sst2("train"), {"dev": embedded.sst2("dev"),
                                             "test": embedded.sst2("test")}, ["negative", "positive"])
        path = need_data(cfg)
        self.name = f"{ds} ({path})"
        if ds in ("sst2", "sst5"):
            load = load_sst2 if ds == "sst2" else load_sst5
            names = ["negative", "positive"] if ds == "sst2" else \
                ["very negative", "negative", "neutral", "positive", "very positive"]
            return load(path, "train"), {"dev": load(path, "dev"), "test": load(path, "test")}, names
        if ds == "imdb":
            return load_imdb(path, "train"), {"test": load_imdb(path, "test")}, \
                ["negative", "positive"]
        if ds == "imdb-rating":  # the star ratings as 8 classes
            test = by_rating(load_imdb(path, "test"))
            return by_rating(load_imdb(path, "train")), {"test": test}, \
                [f"{r}/10" for r in RATINGS]
        raise ConfigError("dataset", f"unknown dataset {ds!r} for the classify task; known: "
                                     f"{known_datasets('classify')}")

    def _untruncated(self, text, pair=None):
        """One example's ids with no length limit (for the max_len choice)."""
        if pair is None:
            return encode_example(self.tokenizer, text, 10 ** 9, add_cls=True)
        return encode_pair(self.tokenizer, text, pair, 10 ** 9)[0]

    def encode(self, texts, pairs=None):
        """(ids, token types) of each example; types None for single texts."""
        if pairs is None:
            return [encode_example(self.tokenizer, t, self.cfg.max_len, add_cls=True)
                    for t in texts], None
        both = [encode_pair(self.tokenizer, a, b, self.cfg.max_len) for a, b in zip(texts, pairs)]
        return [ids for ids, _ in both], [tt for _, tt in both]

    def model_config(self) -> dict:
        if self.init_kind == "bert":
            return {"bert": self.model.bert.cfg.to_dict(), "n_classes": self.n_classes,
                    "pooling": self.cfg.pooling, "dropout": self.cfg.dropout}
        return self.model.cfg.to_dict()

    def _batch(self, seqs, labels, idx, types=None):
        """(ids, key_mask, labels), or (ids, key_mask, token_type_ids, labels) for pairs."""
        ids, km = collate([seqs[j] for j in idx], self.tokenizer.pad_id)
        if types is None:
            return ids, km, labels[idx]
        tt, _ = collate([types[j] for j in idx], 0)  # (B, T), padding is type 0
        return ids, km, tt, labels[idx]

    def _forward(self, b):
        """The model's outputs (B, K) of a batch and its labels."""
        if len(b) == 4:
            ids, km, tt, y = b
            return self.model(ids, km, token_type_ids=tt), y
        ids, km, y = b
        return self.model(ids, km), y

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_ids) / self.cfg.batch_size)

    def train_batches(self, epoch: int):
        plan = plan_batches([len(s) for s in self.train_ids],
                            self.cfg.batch_size, np.random.default_rng((self.cfg.seed, epoch)))
        return LazyEpoch(plan, lambda i, idx: self._noisy(
            self._batch(self.train_ids, self.train_labels, idx, self.train_types), epoch, i))

    def _noisy(self, b, epoch: int, i: int):
        """Batch ``i`` of ``epoch`` with --word-dropout applied (its own seeded stream, so
        a resumed run and every MPI rank draw the same)."""
        if not self.cfg.word_dropout:
            return b
        tok = self.tokenizer
        specials = [getattr(tok, a) for a in ("pad_id", "unk_id", "mask_id", "cls_id", "sep_id")
                    if getattr(tok, a, None) is not None]
        ids = word_dropout(b[0], b[1], self.cfg.word_dropout, tok.unk_id, specials,
                           np.random.default_rng((self.cfg.seed, epoch, i, 5077)))
        return (ids, *b[1:])

    def loss_and_backward(self, b, weight: float = 1.0) -> tuple[float, int]:
        logits, y = self._forward(b)
        loss = float(self.loss(logits, y))
        self.model.backward(self.loss.backward(weight))
        return loss, int(b[1].sum())

    def outputs_ids(self, seqs, types=None) -> np.ndarray:
        """The model's raw outputs (N, K) float64 of encoded sequences, in order."""
        out = []
        for idx in plan_batches([len(s) for s in seqs], EVAL_BATCH, shuffle=False):
            b = self._batch(seqs, np.zeros(len(seqs), np.int64), idx, types)
            out.append(self._forward(b)[0].astype(np.float64))  # (B, K), in order
        return np.concatenate(out) if out else np.zeros((0, self.n_classes))

    def predict_ids(self, seqs, types=None) -> np.ndarray:
        """Class probabilities (N, K) of encoded sequences, in order."""
        out = []
        for idx in plan_batches([len(s) for s in seqs], EVAL_BATCH, shuffle=False):
            b = self._batch(seqs, np.zeros(len(seqs), np.int64), idx, types)
            logits = self._forward(b)[0].astype(np.float64)
            e = np.exp(logits - logits.max(-1, keepdims=True))
            out.append(e / e.sum(-1, keepdims=True))
        return np.concatenate(out) if out else np.zeros((0, self.n_classes))

    def eval_outputs(self, name: str, fn) -> np.ndarray:
        """fn(seqs, types) of evaluation split `name`; with --pair-swap, the mean of fn on
        (a, b) and on (b, a)."""
        out = fn(self.evals[name][0], self.eval_types.get(name))
        if name in self.eval_swapped:
            out = 0.5 * (out + fn(*self.eval_swapped[name]))
        return out

    def metric_names(self) -> list[str]:
        return [f"{name}_{m}" for name in self.evals for m in ("loss", "accuracy")]

    def eval_count(self, split: str) -> int:
        """Examples in an evaluation split (0 for a name that is not one)."""
        return len(self.evals[split][1]) if split in self.evals else 0

    def evaluate(self) -> dict:
        result = {}
        for name, (_, labels) in self.evals.items():
            probs = self.eval_outputs(name, self.predict_ids)
            nll, acc, self.last_confusion[name] = M.classification_scores(probs, labels)
            result[f"{name}_loss"], result[f"{name}_accuracy"] = nll, acc
        return result

    def checkpoint_meta(self) -> dict:
        return {"tokenizer": tokenizer_meta(self.tokenizer), "class_names": self.class_names,
                "text_pairs": self.pairs}

    def report(self, out: Path, log=print) -> dict:
        from numformer.train import outputs
        files = {}
        for name, cm in self.last_confusion.items():
            acc = M.per_class_accuracy(cm)
            log(f"{name}: accuracy {M.accuracy_from_confusion(cm):.4f}; per class: " +
                ", ".join(f"{c} {a:.3f}" for c, a in zip(self.class_names, acc)))
            log(M.format_confusion(cm, [c[:8] for c in self.class_names]))
            p = outputs.plot_confusion(cm, [c[:10] for c in self.class_names],
                                       out / f"confusion_{name}.png", f"{self.name}: {name}")
            files[f"confusion_{name}"] = str(p)
        return files


TASKS = {"mlm": MLMTask, "classify": ClassifyTask, "lm": LMTask}


def _regress(cfg: TrainConfig, log=print, tokenizer=None):
    """numformer.train.regress_task.RegressTask (imported here: it subclasses ClassifyTask)."""
    from numformer.train.regress_task import RegressTask
    return RegressTask(cfg, log=log, tokenizer=tokenizer)


TASKS["regress"] = _regress


def make_task(cfg: TrainConfig, log=print, tokenizer=None):
    """The task of ``cfg``; with ``tokenizer`` (e.g. a checkpoint's), no vocabulary is built.
    Its paths are checked (check_inputs) before any data is read."""
    check_inputs(cfg)
    return TASKS[cfg.task](cfg, log=log, tokenizer=tokenizer)
