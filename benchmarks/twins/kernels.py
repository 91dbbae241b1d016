"""PyTorch's side of the kernels benchmark (numformer/bench/kernels.py), on the
inputs the parent wrote, checked against the NumPy reference results that
numformer's child wrote, before timing:

    layernorm      F.layer_norm, backward by autograd
    cross_entropy  F.cross_entropy (mean), backward by autograd
    adam           torch.optim.Adam (L2 weight decay) and AdamW, each as the
                   for-loop, foreach and fused variants
    embedding      aten's embedding_dense_backward and zeros().index_add_
    dropout        F.dropout, backward by autograd (timed only: other masks)

Runs in a process of its own that never loads numformer's kernels or runtime
settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.twins._torch import torch_gemm_peak, torch_pinned, twin_info
from numformer.bench.harness import child_main
from numformer.bench.kernels import ADAM_STEPS, add_child_args, measure


def torch_impls(torch, op: str, inp: dict) -> dict:
    """name -> (call, result) (result None: timed only)."""
    F = torch.nn.functional
    impls = {}
    if op == "layernorm":
        C = inp["x"].shape[1]
        tx, tg, tb = (torch.from_numpy(inp[k].copy()).requires_grad_(True) for k in "xgb")
        td = torch.from_numpy(inp["dout"])

        def call():
            out = F.layer_norm(tx, (C,), tg, tb, 1e-5)
            return out, torch.autograd.grad(out, (tx, tg, tb), td)

        def result():
            out, grads = call()
            return tuple(t.detach().numpy() for t in (out, *grads))
        impls["torch"] = (call, result)
    elif op == "cross_entropy":
        tx = torch.from_numpy(inp["x"].copy()).requires_grad_(True)
        tt = torch.from_numpy(inp["t"])

        def call():
            loss = F.cross_entropy(tx, tt)
            return loss, torch.autograd.grad(loss, (tx,))[0]

        def result():
            loss, dx = call()
            return loss.detach().numpy(), dx.numpy()
        impls["torch"] = (call, result)
    elif op == "embedding":
        V, C = int(inp["V"]), inp["dout"].shape[1]
        tids, td = torch.from_numpy(inp["ids"]), torch.from_numpy(inp["dout"])

        def dense_bwd():
            return torch.ops.aten.embedding_dense_backward(td, tids, V, -1, False)

        def index_add():
            return torch.zeros(V, C).index_add_(0, tids, td)
        impls["torch embedding_dense_backward"] = (dense_bwd, lambda: (dense_bwd().numpy(),))
        impls["torch index_add_"] = (index_add, lambda: (index_add().numpy(),))
    elif op == "dropout":
        tx = torch.from_numpy(inp["x"].copy()).requires_grad_(True)
        td = torch.from_numpy(inp["dout"])

        def call():
            out = F.dropout(tx, float(inp["meta"]["dropout_p"]), training=True)
            return out, torch.autograd.grad(out, (tx,), td)[0]
        impls["torch"] = (call, None)
    else:
        h = inp["meta"]["adam"]
        for cls, label in ((torch.optim.AdamW, "AdamW"), (torch.optim.Adam, "Adam")):
            for variant, kw in (("for-loop", dict(foreach=False)),
                                ("foreach", dict(foreach=True)), ("fused", dict(fused=True))):
                def make(cls=cls, kw=kw):
                    tp = torch.nn.Parameter(torch.from_numpy(inp["p0"].copy()))
                    tp.grad = torch.from_numpy(inp["g"].copy())
                    opt = cls([tp], lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"],
                              weight_decay=h["weight_decay"], **kw)
                    return opt, tp

                def result(make=make):
                    opt, tp = make()
                    for _ in range(ADAM_STEPS):
                        opt.step()
                    st = opt.state[tp]
                    return (tp.detach().numpy(), st["exp_avg"].numpy(),
                            st["exp_avg_sq"].numpy())
                try:
                    opt, _ = make()
                    opt.step()
                except (RuntimeError, TypeError) as e:  # a variant this torch lacks on the CPU
                    print(f"  skip torch {label} {variant}: {e}", file=sys.stderr)
                    continue
                impls[f"torch {label} {variant}"] = (opt.step, result)
    return impls


def body(args) -> dict:
    torch = torch_pinned(args.threads)
    res = measure(lambda op, inp: torch_impls(torch, op, inp), args.threads, Path(args.dir),
                  args.repeats, torch_gemm_peak(torch), write_ref=False)
    info = twin_info(torch, args.threads)
    res["machine"] = dict(info, blas={"torch": info.pop("blas")})
    return res


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], body, add_child_args))
