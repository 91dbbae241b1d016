"""numformer: a transformer framework in NumPy where every gradient is written by hand.

Layout (see DESIGN.md of the team):
    numformer.ops       pure NumPy forward/backward pairs, no state
    numformer.kernels   Numba twins of the hot ops and the backend switch
    numformer.nn        Module, Parameter, layers, blocks and models
    numformer.gradcheck the one finite-difference checker
"""

__version__ = "0.1.0"

from numformer import _runtime  # noqa: E402

_runtime.tune()

from numformer.kernels import get_backend, set_backend  # noqa: E402

__all__ = ["__version__", "get_backend", "set_backend"]
