"""PyTorch's side of the attention benchmark (numformer/bench/attention.py): one
implementation per process, on the inputs the parent wrote, gated against
numformer's float64 reference there before timing (numformer.bench.attention_child
.measure, which loads neither numformer's kernels nor numba).

- ``torch-flash``, ``torch-math``, ``torch-efficient``, ``torch-cudnn``:
  ``F.scaled_dot_product_attention(q, k, v, attn_mask, is_causal,
  enable_gqa=Hkv < H)`` inside ``sdpa_kernel(SDPBackend.<backend>)``, so that
  exactly that backend runs (torch 2.13 on the CPU: FLASH_ATTENTION and MATH;
  EFFICIENT_ATTENTION, CUDNN_ATTENTION and OVERRIDEABLE find "no viable
  backend" and are reported unavailable).
- ``torch-eager``: ``softmax(q k^T * scale + mask) v`` in eager torch, K and V
  repeated over each group's query heads (``repeat_interleave``) for GQA.

Masks: ``is_causal=True`` where torch's causal convention (query i sees keys
j <= i) is numformer's, i.e. Tq = Tk without padding; otherwise one boolean
(B, 1, Tq, Tk) ``attn_mask`` with the causal part aligned at the end of the keys,
as numformer does (a decode step sees every cached key). The forward pass
runs under ``torch.no_grad`` (inference: torch at its best); the backward
alone re-uses one recorded forward (``retain_graph``); forward+backward
records the graph and calls ``torch.autograd.grad``.
"""

from __future__ import annotations

import sys

from benchmarks.twins._torch import torch_gemm_peak, torch_pinned, twin_info
from numformer.bench.attention_child import Unavailable, add_args, measure
from numformer.bench.harness import child_main

BACKENDS = {"torch-flash": "FLASH_ATTENTION", "torch-math": "MATH",
            "torch-efficient": "EFFICIENT_ATTENTION", "torch-cudnn": "CUDNN_ATTENTION"}


def masks(torch, case: dict):
    """(attn_mask or None, is_causal) in torch's terms for the case."""
    meta = case["meta"]
    Tq, Tk, causal = meta["Tq"], meta["Tk"], meta["causal"]
    km = case.get("key_mask")
    if km is None and (not causal or Tq == Tk):
        return None, causal
    allowed = torch.ones(1, 1, Tq, Tk, dtype=torch.bool)
    if causal:
        allowed = allowed & (torch.arange(Tk)[None, :] <= torch.arange(Tq)[:, None] + (Tk - Tq))
    if km is not None:
        allowed = allowed & torch.from_numpy(km)[:, None, None, :]  # (B, 1, Tq, Tk)
    return allowed, False


def torch_impl(torch, key: str, case: dict) -> dict:
    F = torch.nn.functional
    from torch.nn.attention import SDPBackend, sdpa_kernel
    tq, tk, tv = (torch.from_numpy(case[x]).requires_grad_(True) for x in ("q", "k", "v"))
    tdout = torch.from_numpy(case["dout"])
    G = tq.shape[1] // tk.shape[1]
    attn_mask, is_causal = masks(torch, case)
    scale = 1.0 / tq.shape[-1] ** 0.5

    if key == "torch-eager":
        def f(a, b, c):
            if G > 1:
                b, c = b.repeat_interleave(G, dim=1), c.repeat_interleave(G, dim=1)
            s = (a @ b.transpose(-2, -1)) * scale  # (B, H, Tq, Tk)
            if attn_mask is not None or is_causal:
                m = attn_mask if attn_mask is not None else \
                    torch.ones(s.shape[-2:], dtype=torch.bool).tril()
                s = s.masked_fill(~m, float("-inf"))
            return torch.softmax(s, dim=-1) @ c
    else:
        backend = getattr(SDPBackend, BACKENDS[key])

        def f(a, b, c):
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(a, b, c, attn_mask=attn_mask,
                                                      is_causal=is_causal, enable_gqa=G > 1)
        try:
            f(tq[:, :, :1], tk[:, :, :1], tv[:, :, :1]) if attn_mask is None else f(tq, tk, tv)
        except RuntimeError as e:
            raise Unavailable(f"{BACKENDS[key]}: {str(e).splitlines()[0]}") from None

    def forward():
        with torch.no_grad():
            return f(tq, tk, tv)

    def backward():
        out = f(tq, tk, tv)
        return lambda: torch.autograd.grad(out, (tq, tk, tv), tdout, retain_graph=True)

    def forward_backward():
        out = f(tq, tk, tv)
        return out, torch.autograd.grad(out, (tq, tk, tv), tdout)

    def result():
        out, grads = forward_backward()
        return tuple(t.detach().numpy() for t in (out, *grads))
    return {"forward": forward, "backward": backward, "forward+backward": forward_backward,
            "result": result}


def body(args) -> dict:
    torch = torch_pinned(args.threads)
    res = measure(lambda case: torch_impl(torch, args.key, case), args.name, args)
    info = twin_info(torch, args.threads)
    res["blas"] = info.pop("blas")
    res["machine"] = info
    if args.repeats:
        dt = getattr(torch, args.dtype)
        res["gemm_peak"] = dict(torch_gemm_peak(torch) if dt == torch.float32 else
                                _gemm(torch, dt), dtype=args.dtype, how="torch.mm (1024, 1024)")
    return res


def _gemm(torch, dt, n: int = 1024) -> dict:
    from numformer.bench.harness import gemm_rate, time_call
    a = torch.randn(n, n, dtype=dt, generator=torch.Generator().manual_seed(0))
    out = torch.empty(n, n, dtype=dt)
    return gemm_rate(time_call(lambda: torch.mm(a, a, out=out), repeats=5), n)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], body, add_args))
