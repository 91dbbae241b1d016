"""Regression on a user's file (``--task regress``): a score per text or text pair.

The data, the tokenizer, the encoder and the batches are the classifier's
(numformer.train.tasks.ClassifyTask reading dataset "file"); the head has one
output (a Classifier, or a BertClassifier for ``--init minilm``, with
n_classes=1), trained with the mean squared error (nn.MSELoss) on the
standardized score ``z = (y - mean) / std`` of the training labels, so a
fresh head starts near the right scale whatever the score's range. The
prediction is ``mean + std * z``; ``mean`` and ``std`` are saved in the
checkpoint (``label_mean``, ``label_std``) for ``numformer predict``.

With ``--regress-loss bce`` (the usual recipe for a cross-encoder on a bounded
score such as STS-B's 0-5) the score is rescaled to ``t = (y - low) / (high -
low)`` in [0, 1] by the training scores' range, the head's output z is a logit,
the loss the binary cross-entropy of sigmoid(z) against t
(nn.BCEWithLogitsLoss), and the prediction ``low + (high - low) * sigmoid(z)``
(never outside the training range); ``low`` and ``high`` are saved in the
checkpoint (``label_low``, ``label_high``).

With ``--pair-encoder bi`` (a pretrained BERT, text pairs) the model is a
bi-encoder (numformer.pretrained.BertBiEncoder): each text encoded alone and
pooled, the output the cosine of the two vectors, trained with the squared
error against ``t`` as above (sentence-transformers' CosineSimilarityLoss); the
prediction is ``low + (high - low) * cosine``. ``--pair-encoder cross-cosine``
(numformer.pretrained.BertCrossCosine) is trained and scored the same way, but
the pair is encoded as one sequence (each text attends to the other) and each
text's tokens are mean-pooled from that joint encoding.

With ``--regress-loss cosent`` (bi or cross-cosine) the cosines are trained by
the CoSENT ranking loss instead (numformer.ops.losses.cosent_forward): every two
pairs of a batch whose scores differ should have their cosines in that order.
Only the order is trained, so the cosine's scale says nothing: the prediction
is ``a + b * cosine``, the least-squares line on up to LINE_PAIRS training pairs,
fitted again at each evaluation and kept in the checkpoint (``score_line``).
Its pairs are formed within a step's batch: ``--grad-accum`` and MPI ranks,
which split the batch, are refused with it.

With ``--pair-swap`` (a symmetric score) each training pair is also seen as
(b, a), and dev, test and ``numformer predict`` score both orders, averaged.

Metrics on dev and test: the mean squared error in the score's units
(``{split}_loss``), Pearson's r and Spearman's rho (``{split}_pearson``,
``{split}_spearman``; numformer.train.metrics).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from numformer import distributed as dist
from numformer import nn
from numformer.ops.activations import _sigmoid
from numformer.train import metrics as M
from numformer.train.config import TrainConfig
from numformer.train.settings import ConfigError
from numformer.train.tasks import ClassifyTask


def to_score(z, meta: dict) -> np.ndarray:
    """The head's outputs z (any shape) as scores in the labels' units, by the
    checkpoint's ``meta``: ``mean + std * z`` (mse, older checkpoints), ``low +
    (high - low) * sigmoid(z)`` (bce), ``low + (high - low) * z`` (a bi-encoder's
    cosine z) or ``intercept + slope * z`` (a cosine trained by CoSENT: the line
    fitted on training pairs, ``score_line``)."""
    z = np.asarray(z, dtype=np.float64)
    kind = meta.get("regress_loss", "mse")
    if kind == "cosine" and "score_line" in meta:
        intercept, slope = meta["score_line"]
        return intercept + slope * z
    if kind in ("bce", "cosine"):
        low, high = meta["label_low"], meta["label_high"]
        return low + (high - low) * (_sigmoid(z) if kind == "bce" else z)
    return meta.get("label_mean", 0.0) + meta.get("label_std", 1.0) * z


LINE_PAIRS = 2000  # training pairs a CoSENT cosine's score line is fitted on


class RegressTask(ClassifyTask):
    """A score from one text or a pair: pooled encoder -> Linear(C, 1), MSE or BCE loss."""

    what = "regression"

    def __init__(self, cfg: TrainConfig, log=print, tokenizer=None):
        super().__init__(cfg, log=log, tokenizer=tokenizer)
        y = np.asarray(self.train_labels, dtype=np.float64)
        self.label_mean = float(y.mean())
        std = float(y.std())
        self.label_std = std if std > 0 else 1.0
        if std == 0:
            log(f"warning: every training score is {self.label_mean:g}; nothing to learn")
        self.kind = "cosine" if cfg.pair_encoder != "cross" else cfg.regress_loss
        self.label_low, self.label_high = float(y.min()), float(y.max())
        if self.kind in ("bce", "cosine"):
            if std == 0:
                self.label_high = self.label_low + 1.0  # t = 0 for every score
            self.train_labels = (y - self.label_low) / (self.label_high - self.label_low)
            span = (f"the score rescaled from [{self.label_low:g}, {self.label_high:g}] (the "
                    f"training scores' range) to [0, 1]")
            if self.kind == "bce":
                self.loss = nn.BCEWithLogitsLoss()
                log(f"regression loss: binary cross-entropy on {span}; predictions stay in "
                    f"that range")
            else:
                how = (f"bi-encoder: each text encoded alone, {cfg.pooling}-pooled"
                       if cfg.pair_encoder == "bi" else "cross-encoder with a cosine: the pair "
                       "encoded as one sequence, each text's tokens mean-pooled")
                if cfg.regress_loss == "cosent":
                    if dist.world().size > 1:
                        raise ConfigError("regress_loss", f"'cosent' ranks the pairs of the "
                                                          f"whole batch, which "
                                                          f"{dist.world().size} MPI ranks "
                                                          f"would split: run it on one process")
                    self.loss = nn.CoSENTLoss()
                    self.score_line = (self.label_low, self.label_high - self.label_low)
                    log(f"{how}; the CoSENT loss of the cosines (scale "
                        f"{self.loss.scale:g}) against the order of each batch's scores "
                        f"(the order is trained, not the scale); predictions are a + b x "
                        f"cosine, the least-squares line on up to {LINE_PAIRS:,} training "
                        f"pairs, fitted again at each evaluation")
                else:
                    self.loss = nn.MSELoss()
                    log(f"{how}; the squared error of the two vectors' cosine against {span}")
        else:
            self.train_labels = (y - self.label_mean) / self.label_std
            self.loss = nn.MSELoss()
        self.last_predictions: dict = {}

    @property
    def cosent(self) -> bool:
        """A cosine trained by CoSENT (its scores go through ``score_line``)."""
        return self.kind == "cosine" and self.cfg.regress_loss == "cosent"

    def fit_score_line(self) -> tuple[float, float]:
        """(intercept, slope) of the least-squares line from the model's cosine to the
        score on up to LINE_PAIRS training pairs (a fixed, seeded sample): what a
        CoSENT-trained cosine, whose scale is not trained, maps through. Sets
        ``score_line``, which the checkpoint keeps."""
        n = len(self.train_ids)
        pick = np.sort(np.random.default_rng((self.cfg.seed, 7013)).permutation(n)[:LINE_PAIRS])
        seqs = [self.train_ids[i] for i in pick]
        types = [self.train_types[i] for i in pick] if self.train_types is not None else None
        c = self.outputs_ids(seqs, types)[:, 0]  # (P,) cosines
        y = self.label_low + (self.label_high - self.label_low) * np.asarray(
            self.train_labels, dtype=np.float64)[pick]  # (P,) scores
        var = float(np.var(c))
        slope = float(np.mean((c - c.mean()) * (y - y.mean())) / var) if var > 0 else 0.0
        self.score_line = (float(y.mean() - slope * c.mean()), slope)
        return self.score_line

    def _forward(self, b):
        out, y = super()._forward(b)  # (B, 1)
        return out, y.astype(out.dtype)[:, None]  # (B, 1)

    def loss_count(self, b) -> int:
        """Examples the loss is a mean over (numformer.distributed): every score counts,
        whatever its value (the classifier's ignore_index is no score)."""
        return len(b[-1])

    def predict_scores(self, seqs, types=None) -> np.ndarray:
        """Predicted scores (N,) in the labels' units, in order."""
        return to_score(self.outputs_ids(seqs, types)[:, 0], self._score_meta())  # (N,)

    def _score_meta(self) -> dict:
        """What maps an output to a score (saved in the checkpoint; to_score)."""
        meta = {"label_mean": self.label_mean, "label_std": self.label_std,
                "regress_loss": self.kind}
        if self.kind in ("bce", "cosine"):
            meta.update(label_low=self.label_low, label_high=self.label_high)
        if self.cosent:
            meta["score_line"] = list(self.score_line)
        return meta

    def metric_names(self) -> list[str]:
        return [f"{name}_{m}" for name in self.evals for m in ("loss", "pearson", "spearman")]

    def evaluate(self) -> dict:
        if self.cosent:
            self.fit_score_line()
        result = {}
        for name, (_, y) in self.evals.items():
            pred = self.eval_outputs(name, self.predict_scores)
            self.last_predictions[name] = (pred, np.asarray(y, dtype=np.float64))
            result.update({f"{name}_{k}": v for k, v in M.regression_scores(pred, y).items()})
        return result

    def checkpoint_meta(self) -> dict:
        return {**super().checkpoint_meta(), **self._score_meta()}

    def report(self, out: Path, log=print) -> dict:
        if self.cosent:
            a, b = self.score_line
            log(f"scores: {a:.4g} + {b:.4g} x cosine (the least-squares line on "
                f"{min(LINE_PAIRS, len(self.train_ids)):,} training pairs, CoSENT having "
                f"trained the cosines' order only)")
        for name, (pred, y) in self.last_predictions.items():
            log(f"{name}: {len(y)} examples; MSE {np.mean((pred - y) ** 2):.4f}, Pearson "
                f"{M.pearson(pred, y):.4f}, Spearman {M.spearman(pred, y):.4f}; predictions "
                f"range [{pred.min():.3g}, {pred.max():.3g}], labels [{y.min():.3g}, "
                f"{y.max():.3g}]")
        return {}
