"""The configuration of a pretrained BERT, read from a Hugging Face ``config.json``.

Only the fields that shape the network are kept; the rest of the file
(``architectures``, ``transformers_version``, ...) is ignored. Choices this
package cannot reproduce (relative position embeddings, a decoder with cross
attention, an activation numformer lacks) are refused with a ValueError
rather than loaded into a model that would compute something else.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

# Hugging Face activation name -> numformer.nn.make_activation name.
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
               "relu": "relu"}


@dataclass
class BertConfig:
    vocab_size: int = 30522             # V
    hidden_size: int = 768              # C
    num_hidden_layers: int = 12
    num_attention_heads: int = 12       # H
    intermediate_size: int = 3072       # F
    hidden_act: str = "gelu"            # Hugging Face name; see ACTIVATIONS
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1   # dropout on the attention probabilities (training)
    max_position_embeddings: int = 512  # L
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"num_attention_heads: expected a divisor of hidden_size="
                             f"{self.hidden_size}, got {self.num_attention_heads}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act: expected one of {sorted(ACTIVATIONS)}, "
                             f"got {self.hidden_act!r}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            p = getattr(self, name)
            if not 0.0 <= float(p) < 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1), got {p!r}")
        if not float(self.layer_norm_eps) > 0:
            raise ValueError(f"layer_norm_eps: expected a positive number, "
                             f"got {self.layer_norm_eps!r}")

    @property
    def activation(self) -> str:
        """The numformer name of the activation."""
        return ACTIVATIONS[self.hidden_act]

    @classmethod
    def from_dict(cls, d: dict) -> "BertConfig":
        """From the dictionary of a Hugging Face ``config.json`` (unknown keys ignored)."""
        if not isinstance(d, dict):
            raise ValueError(f"config: expected a JSON object, got {type(d).__name__}")
        model_type = d.get("model_type", "bert")
        if model_type != "bert":
            raise ValueError(f"config model_type: expected 'bert', got {model_type!r}")
        pos = d.get("position_embedding_type", "absolute")
        if pos != "absolute":
            raise ValueError(f"config position_embedding_type: expected 'absolute' (the only "
                             f"kind numformer implements), got {pos!r}")
        for flag in ("is_decoder", "add_cross_attention"):
            if d.get(flag):
                raise ValueError(f"config {flag}: expected false (numformer loads encoders "
                                 f"only), got {d[flag]!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_file(cls, path) -> "BertConfig":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FileNotFoundError(f"config: no file {path}") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"config: {path} is not valid JSON ({e})") from None
        return cls.from_dict(d)

    def to_dict(self) -> dict:
        """The Hugging Face fields (a loadable ``config.json``)."""
        d = dataclasses.asdict(self)
        d.update(model_type="bert", architectures=["BertModel"],
                 position_embedding_type="absolute")
        return d
