"""What every twin child shares: torch pinned to the thread count, its own GEMM
peak, the SDPA backend it would choose, and the BLAS it uses."""

from __future__ import annotations

import os


def torch_pinned(threads: int):
    """torch with ``threads`` intra-op threads and one inter-op thread."""
    import torch
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    return torch


def torch_gemm_peak(torch, n: int = 1024, repeats: int = 5) -> dict:
    """torch.mm on (n, n) float32 at the pinned thread count: GFLOP/s with spread."""
    from numformer.bench.harness import gemm_rate, time_call
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(0))
    out = torch.empty(n, n)
    return gemm_rate(time_call(lambda: torch.mm(a, a, out=out), repeats=repeats), n)


def sdpa_choice(torch, q, k, v, attn_mask=None, is_causal=False) -> str:
    """The backend torch's scaled_dot_product_attention picks for these inputs
    (FLASH_ATTENTION, MATH, ...), or "unknown" where torch does not say."""
    try:
        from torch.nn.attention import SDPBackend
        return SDPBackend(int(torch._fused_sdp_choice(q, k, v, attn_mask, 0.0, is_causal))).name
    except Exception:  # a private API: may move
        return "unknown"


def twin_info(torch, threads: int) -> dict:
    """The torch side's machine record: versions, threads, BLAS, its GEMM peak."""
    from numformer.bench.harness import blas_info, machine_info
    info = machine_info(threads)
    info["torch_threads"] = torch.get_num_threads()
    import re
    m = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    linked = m.group(1) if m else "unknown"
    # torch's own BLAS is linked into libtorch (threadpoolctl sees only what is loaded
    # as a separate library, e.g. NumPy's OpenBLAS)
    info["blas"] = [{"internal_api": f"torch BLAS_INFO={linked}", "library": "libtorch_cpu",
                     "num_threads": torch.get_num_threads()}] + blas_info()
    info["pid"] = os.getpid()
    return info
