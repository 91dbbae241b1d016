"""numformer: a transformer framework in NumPy where every gradient is written by hand.

Layout (see DESIGN.md of the team):
    numformer.ops       pure NumPy forward/backward pairs, no state
    numformer.kernels   Numba twins of the hot ops and the backend switch
    numformer.nn        Module, Parameter, layers, blocks and models
    numformer.gradcheck the one finite-difference checker
"""

__version__ = "0.1.0"

# Importing numformer changes nothing in the process: the speed settings of
# numformer._runtime (OMP_WAIT_POLICY, glibc's allocator) are applied when the
# Numba kernels first load and when training starts.
from numformer.kernels import get_backend, set_backend  # noqa: E402
from numformer.grad_mode import is_grad_enabled, no_grad  # noqa: E402

__all__ = ["__version__", "get_backend", "set_backend", "no_grad", "is_grad_enabled"]
