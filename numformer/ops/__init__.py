"""The math of numformer: pure NumPy forward/backward pairs, no state.

Each op is ``<op>_forward(x, *params) -> (out, cache)`` and
``<op>_backward(dout, cache) -> grads``. Shape letters: B batch, T sequence,
C channels, H heads, D = C // H, F feed-forward width, V vocabulary.
"""

from numformer.ops.activations import (gelu_backward, gelu_forward, relu_backward, relu_forward,
                                       tanh_backward, tanh_forward)
from numformer.ops.attention import (MASKED_SCORE, attention_backward, attention_forward,
                                     merge_heads, mha_backward, mha_forward, split_heads)
from numformer.ops.dropout import dropout_backward, dropout_forward
from numformer.ops.embedding import (embedding_backward, embedding_forward, position_backward,
                                     position_forward, sinusoidal_table)
from numformer.ops.layernorm import layernorm_backward, layernorm_forward
from numformer.ops.linear import linear_backward, linear_forward
from numformer.ops.losses import cross_entropy_backward, cross_entropy_forward
from numformer.ops.matmul import matmul_backward, matmul_forward
from numformer.ops.pooling import (cls_pool_backward, cls_pool_forward, mean_pool_backward,
                                   mean_pool_forward)
from numformer.ops.softmax import (log_softmax_backward, log_softmax_forward, softmax_backward,
                                   softmax_forward)
# the modern decoder ops (Llama): RMSNorm, rotary embeddings, SiLU, SwiGLU
from numformer.ops.activations import silu_backward, silu_forward
from numformer.ops.rmsnorm import rmsnorm_backward, rmsnorm_forward
from numformer.ops.rope import half_split_permutation, rope_backward, rope_forward, rope_tables
from numformer.ops.swiglu import (silu_mul_backward, silu_mul_forward, swiglu_backward,
                                  swiglu_forward)

__all__ = [name for name in dir() if name.endswith(("_forward", "_backward"))] + [
    "MASKED_SCORE", "merge_heads", "split_heads", "sinusoidal_table"] + [
    "rope_tables", "half_split_permutation"]
