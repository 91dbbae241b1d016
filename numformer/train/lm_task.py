"""The causal language-model task: a token stream, random windows for training,
a held-out tail (or a separate file) for bits per character.

From scratch the stream is bytes (the char LM; ``--arch llama`` for a
Llama-style decoder). With ``--init smollm2`` (or a Llama .gguf file) the run
fine-tunes that pretrained decoder on the text in its own byte-level BPE,
fully or, with ``--lora-rank R``, through rank-R adapters with every base
weight frozen (no gradient buffer, no optimizer state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from numformer import nn
from numformer.data import embedded
from numformer.data.datasets import load_text, load_tinyshakespeare
from numformer.data.tokenizers import ByteTokenizer
from numformer.train import metrics as M
from numformer.train.config import TrainConfig, known_datasets
from numformer.train.settings import ConfigError
from numformer.train.task_base import (EVAL_BATCH, LazyEpoch, model_config, need_data,
                                       tokenizer_meta)


class LMTask:
    """Character (byte) level causal LM on one stream: random windows for
    training, the held-out tail for bits per character."""

    def __init__(self, cfg: TrainConfig, log=print, tokenizer=None):
        self.cfg = cfg
        text = self._text(cfg)
        pretrained = None
        if cfg.init:  # a pretrained LLM and its tokenizer
            from numformer.pretrained.llama import load_llama
            pretrained, bpe = load_llama(None if cfg.init == "smollm2" else cfg.init)
            tokenizer = tokenizer or bpe
        self.tokenizer = tokenizer or ByteTokenizer()
        if cfg.eval_data:  # a separate held-out file
            self.held_text = load_text(cfg.eval_data)
            cut = len(text)
        else:  # the tail of the text
            cut = int(len(text) * (1.0 - cfg.eval_fraction))
            self.held_text = text[cut:]
        self.train = np.asarray(self.tokenizer.encode(text[:cut]), dtype=np.int64)
        self.held = np.asarray(self.tokenizer.encode(self.held_text), dtype=np.int64)
        if len(self.train) < cfg.max_len + 1 or len(self.held) < cfg.max_len + 1:
            raise ValueError(f"dataset {self.name!r}: too short for windows of {cfg.max_len} "
                             f"tokens ({len(self.train)} train, {len(self.held)} held-out)")
        self.lora = None
        if pretrained is not None:
            self.model = pretrained.train()
            if cfg.max_len > self.model.cfg.max_len:
                raise ConfigError("max_len", f"expected at most {self.model.cfg.max_len} (the "
                                             f"context of --init {cfg.init}), got {cfg.max_len}")
            self._set_dropout(cfg.dropout)
            if cfg.lora_rank:
                from numformer.nn.lora import add_lora
                self.lora = {"rank": cfg.lora_rank, "alpha": cfg.lora_alpha or None}
                add_lora(self.model, cfg.lora_rank, self.lora["alpha"], seed=cfg.seed)
        else:
            self.model = nn.CausalLM(model_config(cfg, self.tokenizer.vocab_size),
                                     seed=cfg.seed)
        self.loss = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        unit = "bytes" if isinstance(self.tokenizer, ByteTokenizer) else "tokens"
        trainable = sum(p.size for p in self.model.trainable_parameters())
        log(f"causal LM on {self.name}: {len(self.train):,} training {unit}, {len(self.held):,} "
            f"held-out {unit} ({len(self.held_text):,} characters), windows of {cfg.max_len}, "
            f"model {self.model.num_parameters():,} parameters"
            + (f" ({trainable:,} trained: LoRA rank {cfg.lora_rank})" if self.lora else "")
            + (f", initialised from {cfg.init}" if cfg.init else ""))

    def _set_dropout(self, p: float) -> None:
        """A pretrained decoder (SmolLM2 has none) takes this run's dropout."""
        for m in self.model.modules():
            if isinstance(m, nn.Dropout):
                m.p = float(p)

    def _text(self, cfg) -> str:
        ds = cfg.dataset
        if ds in ("", "embedded"):
            self.name = "embedded tinyshakespeare"
            return embedded.tinyshakespeare()
        path = need_data(cfg)
        self.name = f"{ds} ({path})"
        if ds == "tinyshakespeare":  # the file, or a folder holding tinyshakespeare.txt
            return load_tinyshakespeare(path)
        if ds in ("text", "wikitext2"):
            return load_text(path)
        raise ConfigError("dataset", f"unknown dataset {ds!r} for the lm task; known: "
                                     f"{known_datasets('lm')}")

    def model_config(self) -> dict:
        return self.model.cfg.to_dict()

    def steps_per_epoch(self) -> int:
        return max(1, len(self.train) // (self.cfg.batch_size * self.cfg.max_len))

    def train_batches(self, epoch: int):
        cfg = self.cfg
        T, B = cfg.max_len, cfg.batch_size

        def build(i, _):
            starts = np.random.default_rng((cfg.seed, epoch, i)).integers(
                0, len(self.train) - T, B)
            x = np.stack([self.train[s:s + T] for s in starts])  # (B, T)
            y = np.stack([self.train[s + 1:s + T + 1] for s in starts])  # (B, T)
            return x, y
        return LazyEpoch(range(self.steps_per_epoch()), build)

    def loss_and_backward(self, b, weight: float = 1.0) -> tuple[float, int]:
        x, y = b
        loss = float(self.loss(self.model(x), y))
        self.model.backward(self.loss.backward(weight))
        return loss, x.size

    def metric_names(self) -> list[str]:
        return ["eval_loss", "bits_per_byte", "bits_per_char"]

    def evaluate(self, max_tokens: int = 200_000, logits_mb: float = 256.0) -> dict:
        """Mean loss over the held-out tail in non-overlapping windows (each position
        predicted with the context since its window's start). Windows are evaluated
        EVAL_BATCH at a time, fewer where their float32 logits would pass
        ``logits_mb`` (SmolLM2's 49,152-token vocabulary: 5 windows of 256)."""
        T = self.cfg.max_len
        data = self.held[:max_tokens + 1]
        n_win = (len(data) - 1) // T
        per_window = T * self.tokenizer.vocab_size * 4 / 2 ** 20  # MB of logits
        batch = max(1, min(EVAL_BATCH, int(logits_mb // per_window)))
        nll = 0.0
        for s in range(0, n_win, batch):
            idx = np.arange(s, min(n_win, s + batch)) * T
            x = np.stack([data[i:i + T] for i in idx])
            y = np.stack([data[i + 1:i + T + 1] for i in idx])
            nll += float(self.loss(self.model(x), y)) * y.size
        n_tok = n_win * T
        mean = nll / n_tok
        chars = len(self.tokenizer.decode(data[1:n_tok + 1]))
        return {"eval_loss": mean, "bits_per_byte": M.bits(mean),
                "bits_per_char": M.bits(nll / chars)}

    def checkpoint_meta(self) -> dict:
        meta = {"tokenizer": tokenizer_meta(self.tokenizer)}
        if self.lora:
            meta["lora"] = self.lora
        return meta

    def report(self, out: Path, log=print) -> dict:
        from numformer.train.generate import generate, never_sampled
        prompt = self.held_text[:40]
        n = 300 if isinstance(self.tokenizer, ByteTokenizer) else 100  # bytes | BPE tokens
        ids = generate(self.model, np.asarray(self.tokenizer.encode(prompt), dtype=np.int64), n,
                       temperature=0.8, top_k=None, seed=self.cfg.seed,
                       exclude=never_sampled(self.tokenizer))
        sample = self.tokenizer.decode(ids.tolist())
        (out / "sample.txt").write_text(sample, encoding="utf-8")
        log("sample (temperature 0.8):\n" + sample)
        return {"sample": str(out / "sample.txt")}
