"""Loading a trained model from its checkpoint, for eval, predict, neighbours,
generation and attention maps."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from numformer import nn
from numformer.train.checkpoint import CheckpointError, load_checkpoint, nonfinite_tensors
from numformer.train.config import TrainConfig
from numformer.train.loop import BEST, CHECKPOINT
from numformer.train.task_base import tokenizer_from_meta

MODEL_CLASSES = {"MaskedLM": nn.MaskedLM, "Classifier": nn.Classifier, "CausalLM": nn.CausalLM}


@dataclass
class Trained:
    model: nn.Module
    tokenizer: object
    train_config: TrainConfig
    meta: dict
    path: Path


def resolve_checkpoint(path) -> Path:
    """A checkpoint file, or a run folder: its best.npz when the run kept one
    (``--keep-best``), else its checkpoint.npz."""
    path = Path(path)
    if path.is_dir():
        path = path / BEST if (path / BEST).is_file() else path / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file (give a checkpoint.npz or the "
                                f"run folder that holds one)")
    return path


class NonFiniteWeights(RuntimeWarning):
    """A loaded checkpoint holds NaN or infinite weights."""


def checkpoint_meta(path) -> dict:
    """The metadata of a run folder's checkpoint (as ``load_trained`` picks it) or
    of a checkpoint file."""
    return load_checkpoint(resolve_checkpoint(path))["meta"]


def load_trained(path) -> Trained:
    """Model (in eval mode), tokenizer and configuration of a training checkpoint.

    Weights holding NaN or inf (numformer never writes them; a checkpoint
    from elsewhere or an older version might) load, with a NonFiniteWeights
    warning naming the tensors: what the model computes from them is NaN.
    """
    path = resolve_checkpoint(path)
    ck = load_checkpoint(path)
    bad = nonfinite_tensors(ck["model"])
    if bad:
        names = ", ".join(f"{name} ({n} of {size})" for name, n, size in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        warnings.warn(f"checkpoint {path}: non-finite weights (NaN or inf) in {names}{more}; "
                      f"outputs that depend on them will be NaN", NonFiniteWeights, stacklevel=2)
    meta = ck["meta"]
    kind = meta.get("model_class")
    if (kind not in MODEL_CLASSES and kind not in ("BertClassifier", "BertBiEncoder",
                                                   "BertCrossCosine")) \
            or "model_config" not in meta or "tokenizer" not in meta:
        raise CheckpointError(f"checkpoint {path}: not a training checkpoint of numformer "
                              f"(model class {kind!r})")
    if kind == "BertBiEncoder":
        from numformer.pretrained import BertBiEncoder, BertConfig, BertModel
        mc = meta["model_config"]
        model = BertBiEncoder(BertModel(BertConfig.from_dict(mc["bert"])), pooling=mc["pooling"])
    elif kind == "BertCrossCosine":
        from numformer.pretrained import BertConfig, BertCrossCosine, BertModel
        model = BertCrossCosine(BertModel(BertConfig.from_dict(meta["model_config"]["bert"])))
    elif kind == "BertClassifier":
        from numformer.pretrained import BertClassifier, BertConfig, BertModel
        mc = meta["model_config"]
        model = BertClassifier(BertModel(BertConfig.from_dict(mc["bert"])), mc["n_classes"],
                               pooling=mc["pooling"], dropout=mc["dropout"])
    else:
        model = MODEL_CLASSES[kind](nn.ModelConfig.from_dict(meta["model_config"]))
    if meta.get("lora"):  # a LoRA fine-tune: the same adapters, then the saved weights
        from numformer.nn.lora import add_lora
        add_lora(model, meta["lora"]["rank"], meta["lora"]["alpha"], freeze=False)
    model.load_state_dict(ck["model"])
    model.eval()
    return Trained(model, tokenizer_from_meta(meta["tokenizer"]),
                   TrainConfig.from_dict(meta["train_config"], source=str(path)), meta, path)
