"""PyTorch's side of the attention benchmark (numformer/bench/attention.py):
``scaled_dot_product_attention`` (the backend it picks for the inputs is
recorded) and the eager ``softmax(q k^T * scale) v``, on the inputs the parent
wrote, checked against the NumPy reference there before timing. Runs in a
process of its own that never loads numformer's kernels or runtime settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.twins._torch import sdpa_choice, torch_gemm_peak, torch_pinned, twin_info
from numformer.bench.attention import D, add_child_args, measure
from numformer.bench.harness import child_main, load_npz


def torch_impls(torch, case: dict, causal: bool) -> dict:
    """name -> (forward(), forward_backward(), result() -> (out, dq, dk, dv))."""
    F = torch.nn.functional
    tq, tk, tv = (torch.from_numpy(case[x]).requires_grad_(True) for x in ("q", "k", "v"))
    tdout = torch.from_numpy(case["dout"])
    scale = 1.0 / D ** 0.5

    def sdpa(a, b, c):
        return F.scaled_dot_product_attention(a, b, c, is_causal=causal)

    def eager(a, b, c):
        s = (a @ b.transpose(-2, -1)) * scale  # (B, H, T, T)
        if causal:
            T = s.shape[-1]
            s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        return torch.softmax(s, dim=-1) @ c

    impls = {}
    for name, f in (("torch SDPA", sdpa), ("torch eager math", eager)):
        def fwd(f=f):
            return f(tq, tk, tv)  # autograd on: the training forward

        def fwd_bwd(f=f):
            out = f(tq, tk, tv)
            return out, torch.autograd.grad(out, (tq, tk, tv), tdout)

        def result(fwd_bwd=fwd_bwd):
            out, grads = fwd_bwd()
            return tuple(t.detach().numpy() for t in (out, *grads))
        impls[name] = (fwd, fwd_bwd, result)
    return impls


def body(args) -> dict:
    torch = torch_pinned(args.threads)
    Ts = [int(t) for t in args.T.split(",")]
    res = measure(lambda case: torch_impls(torch, case, args.causal), args.impls.split(","),
                  args.threads, Ts, args.repeats, args.causal, Path(args.dir),
                  torch_gemm_peak(torch))
    paths = {}
    for T in Ts:
        q = torch.from_numpy(load_npz(Path(args.dir) / f"{T}.npz")["q"])
        paths[T] = sdpa_choice(torch, q, q, q, None, args.causal)
    info = twin_info(torch, args.threads)
    res["machine"] = dict(info, blas={"torch": info.pop("blas")})
    res["torch_path"] = paths
    return res


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], body, add_child_args))
