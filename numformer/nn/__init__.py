"""Layers, blocks and models: thin classes around the ops, each holding its
Parameters and the cache of its last forward pass."""

from numformer.nn.blocks import Encoder, EncoderBlock
from numformer.nn.causal_lm import CausalLM
from numformer.nn.layers import (ClsPool, CrossEntropyLoss, Dropout, Embedding, FeedForward, GELU,
                                 LayerNorm, LearnedPositions, Linear, MeanPool, MultiHeadAttention,
                                 ReLU, SinusoidalPositions, Softmax, Tanh, attention_maps,
                                 make_activation)
from numformer.nn.models import (Classifier, MaskedLM, MLMHead, ModelConfig, TransformerEncoder,
                                 WithLoss)
from numformer.nn.module import Module, ModuleList, Parameter, accumulate, is_grad_enabled, no_grad
from numformer.nn.attention import Attention, KVCache
from numformer.nn.transformer import ARCHITECTURES, Transformer
from numformer.nn.modern import RMSNorm, Rotary, SiLU, SwiGLU
from numformer.nn.layers import BCEWithLogitsLoss, CoSENTLoss, MSELoss

__all__ = ["Module", "ModuleList", "Parameter", "Linear", "Embedding", "SinusoidalPositions",
           "LearnedPositions", "LayerNorm", "ReLU", "Tanh", "GELU", "Dropout", "Softmax",
           "MultiHeadAttention", "FeedForward", "MeanPool", "ClsPool", "CrossEntropyLoss",
           "make_activation", "attention_maps", "EncoderBlock", "Encoder", "ModelConfig", "TransformerEncoder",
           "MLMHead", "MaskedLM", "Classifier", "CausalLM", "WithLoss",
           "RMSNorm", "Rotary", "SiLU", "SwiGLU",
           "Transformer", "Attention", "KVCache", "ARCHITECTURES"]
__all__ += ["accumulate", "no_grad", "is_grad_enabled"]
__all__ += ["BCEWithLogitsLoss", "CoSENTLoss", "MSELoss"]
