"""The PyTorch side of the LLM benchmark (numformer/bench/llm.py): SmolLM2-135M
from the same GGUF file through transformers' ``AutoModelForCausalLM``
(float32, its default attention), the same token ids (the parent's case file).

- prefill: ``model(ids, use_cache=True)`` under ``torch.inference_mode()``,
  logits at every position (as numformer's);
- decode: greedy steps of one token against the returned cache
  (``past_key_values``), the lean loop under ``generate``;
- full fine-tuning: logits, ``F.cross_entropy``, backward,
  ``torch.optim.AdamW(fused=True)`` (weight decay on matrices), ``use_cache=False``;
- LoRA: a minimal adapter twin (no new dependency): each adapted projection
  computes ``base(x) + scale * (x @ A) @ B``; numformer's fused Wqkv adapter is
  one A shared by q_proj, k_proj and v_proj with B cut by columns (the same
  function; ``x @ A`` is computed three times, 3 x 2 x N x C x r FLOPs,
  negligible); base weights frozen (``requires_grad_(False)``).

Before timing, the twin checks itself against numformer's arrays (``gate`` of
numformer/bench/llm_run.py): prefill logits, the greedy ids, and the loss and
gradients of a small batch, full and LoRA. This process never imports
numformer's kernels or runtime settings (its JSON holds the evidence).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from benchmarks.twins._torch import torch_gemm_peak, torch_pinned, twin_info
from numformer.bench.harness import child_main, load_average, load_npz, spread, time_call
from numformer.bench.llm import ADAMW, add_child_args, copy_bandwidth


def load_hf(case: dict, torch):
    from transformers import AutoModelForCausalLM
    path = Path(case["meta"]["gguf"])
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 dtype=torch.float32)
    return model.eval()


class Adapted:
    """Factory of the adapter module (torch.nn is imported lazily)."""

    @staticmethod
    def make(torch, base, A, B, scale: float):
        class LoRALinear(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.base, self.A, self.B, self.scale = base, A, B, scale

            def forward(self, x):
                return self.base(x) + self.scale * ((x @ self.A) @ self.B)
        return LoRALinear()


def install_lora(hf, case: dict, torch):
    """Adapters from the case's initial values on every projection; the base
    frozen. Returns (adapters by numformer name -> (A, [B parts]), restore())."""
    P = torch.nn.Parameter
    s, rank = case["meta"]["sizes"], case["meta"]["work"]["rank"]
    scale = 2.0  # numformer's default alpha = 2 r
    for p in hf.parameters():
        p.requires_grad_(False)
    adapters, undo = {}, []

    def put(mod, attr, A, B):
        base = getattr(mod, attr)
        setattr(mod, attr, Adapted.make(torch, base, A, B, scale))
        undo.append((mod, attr, base))
    for i, layer in enumerate(hf.model.layers):
        pre = f"body.encoder.blocks.{i}."
        att, mlp = layer.self_attn, layer.mlp
        get = lambda w, ab: torch.from_numpy(case[f"lora:{pre}{w}:{ab}"].copy())
        A = P(get("attn.Wqkv", "A"))
        Bq = get("attn.Wqkv", "B")
        q, kv = s["H"] * s["D"], s["Hkv"] * s["D"]
        parts = [P(Bq[:, :q].clone()), P(Bq[:, q:q + kv].clone()), P(Bq[:, q + kv:].clone())]
        for attr, B in zip(("q_proj", "k_proj", "v_proj"), parts):
            put(att, attr, A, B)
        adapters[pre + "attn.Wqkv"] = (A, parts)
        for w, mod, attr in (("attn.Wo", att, "o_proj"), ("ffn.w_gate", mlp, "gate_proj"),
                             ("ffn.w_up", mlp, "up_proj"), ("ffn.w_down", mlp, "down_proj")):
            A, B = P(get(w, "A")), P(get(w, "B"))
            put(mod, attr, A, B)
            adapters[pre + w] = (A, [B])

    def restore():
        for mod, attr, base in reversed(undo):
            setattr(mod, attr, base)
        for p in hf.parameters():
            p.requires_grad_(True)
    return adapters, restore


def train_closure(hf, x, y, torch, params):
    F = torch.nn.functional
    h = ADAMW
    hf.train()
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": h["weight_decay"]},
                             {"params": rest, "weight_decay": 0.0}], lr=h["lr"],
                            betas=tuple(h["betas"]), eps=h["eps"], fused=True)
    x, y = torch.from_numpy(x), torch.from_numpy(y)

    def loss_and_backward():
        logits = hf(input_ids=x, use_cache=False).logits  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        return loss

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_and_backward()
        opt.step()
        return loss.item()
    return step, loss_and_backward


def _cache_kwarg(hf) -> str:
    """The forward's name for the key-value cache: ``cache`` (transformers >= 5.2x),
    ``past_key_values`` before."""
    import inspect
    return "cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"


def _cache_of(out):
    c = getattr(out, "cache", None)
    return c if c is not None else out.past_key_values


def prefill(hf, ids, torch):
    with torch.inference_mode():
        out = hf(input_ids=ids, use_cache=True)
    return out.logits, _cache_of(out)


def greedy(hf, logits, cache, n: int, torch, clock=None):
    out = [int(logits[0, -1].argmax())]
    kw = _cache_kwarg(hf)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(n):
            r = hf(input_ids=torch.tensor([[out[-1]]]), use_cache=True, **{kw: cache})
            cache = _cache_of(r)
            out.append(int(r.logits[0, -1].argmax()))
    if clock is not None:
        clock.append(time.perf_counter() - t0)
    return out


def full_grads(hf, names: list) -> dict:
    """Checked gradients in numformer's layout ((C_in, C_out) matrices, fused Wqkv)."""
    import numpy as np
    out = {}
    for name in names:
        if name == "body.encoder.final_norm.weight":
            out[name] = hf.model.norm.weight.grad.numpy().copy()
            continue
        i, w = name.split(".")[3], ".".join(name.split(".")[4:])
        layer = hf.model.layers[int(i)]
        a, m = layer.self_attn, layer.mlp
        T = lambda mod: mod.weight.grad.T.numpy()
        out[name] = {"attn.Wqkv": lambda: np.concatenate([T(a.q_proj), T(a.k_proj), T(a.v_proj)],
                                                         axis=1),
                     "attn.Wo": lambda: T(a.o_proj), "ffn.w_gate": lambda: T(m.gate_proj),
                     "ffn.w_up": lambda: T(m.up_proj), "ffn.w_down": lambda: T(m.down_proj),
                     "ln1.weight": lambda: layer.input_layernorm.weight.grad.numpy(),
                     "ln2.weight": lambda: layer.post_attention_layernorm.weight.grad.numpy(),
                     }[w]().copy()
    return out


def check(hf, case: dict, torch) -> dict:
    """numformer's gate arrays, computed by the twin."""
    import numpy as np
    m = case["meta"]
    ids = torch.from_numpy(case["prompt"])
    logits, cache = prefill(hf, ids, torch)
    out = {"logits": logits.numpy(), "greedy": np.array(greedy(hf, logits, cache,
                                                               m["work"]["new_tokens"], torch))}
    _, lb = train_closure(hf, case["check_x"], case["check_y"], torch, list(hf.parameters()))
    hf.zero_grad(set_to_none=True)
    out["full:loss"] = lb().detach().numpy()
    out.update({f"full:grad:{k}": v for k, v in full_grads(hf, m["checked_grads"]).items()})
    hf.zero_grad(set_to_none=True)
    adapters, restore = install_lora(hf, case, torch)
    params = [p for A, Bs in adapters.values() for p in [A, *Bs]]
    _, lb = train_closure(hf, case["check_x"], case["check_y"], torch, params)
    out["lora:loss"] = lb().detach().numpy()
    for key in m["checked_lora"]:
        name, ab = key.rsplit(":", 1)
        A, Bs = adapters[name]
        out[f"lora:grad:{key}"] = (A.grad.numpy().copy() if ab == "A" else
                                   np.concatenate([b.grad.numpy() for b in Bs], axis=1))
    out["lora:base_grads"] = np.array(sum(p.grad is not None for p in hf.parameters()
                                          if all(p is not q for q in params)))
    restore()
    hf.zero_grad(set_to_none=True)
    hf.eval()
    return out


def body(args) -> dict:
    torch = torch_pinned(args.threads)
    case = load_npz(args.case)
    phases = args.phases.split(",")
    t0 = time.perf_counter()
    hf = load_hf(case, torch)
    load_s = time.perf_counter() - t0
    result = {"path": {"attn_implementation": getattr(hf.config, "_attn_implementation", None),
                       "load_s": load_s}}
    if args.arrays:  # numformer's arrays: the same model, before any timing
        from numformer.bench.llm_run import gate
        result["check"] = gate(load_npz(args.arrays), check(hf, case, torch))
        c = result["check"]
        print(f"torch twin agrees with numformer: logits {c['logits_rel']:.1e} of their range, "
              f"{c['greedy_tokens_equal']} greedy ids equal, full grads "
              f"{c['full']['grad_max_rel']:.1e}, LoRA grads {c['lora']['grad_max_rel']:.1e}",
              flush=True)
    load_before = load_average()
    ids, w, times = torch.from_numpy(case["prompt"]), case["meta"]["work"], {}
    if "prefill" in phases:
        times["prefill"] = time_call(lambda: prefill(hf, ids, torch), repeats=args.repeats,
                                     warmup=1, min_time=0.0)
    if "decode" in phases:
        clock = []
        for _ in range(args.repeats + 1):
            logits, cache = prefill(hf, ids, torch)
            greedy(hf, logits, cache, w["new_tokens"], torch, clock)
        times["decode"] = dict(spread(clock[1:]), first_ms=1e3 * clock[0])
    if "full" in phases:
        step, _ = train_closure(hf, case["x"], case["y"], torch, list(hf.parameters()))
        times["full"] = time_call(step, repeats=args.repeats, warmup=1, min_time=0.0)
        del step
        hf.zero_grad(set_to_none=True)
    if "lora" in phases:
        adapters, _ = install_lora(hf, case, torch)
        params = [p for A, Bs in adapters.values() for p in [A, *Bs]]
        step, _ = train_closure(hf, case["x"], case["y"], torch, params)
        times["lora"] = time_call(step, repeats=args.repeats, warmup=1, min_time=0.0)
    hf.eval()
    return {**result, "times": times, "load": [load_before, load_average()],
            "gemm_peak": torch_gemm_peak(torch), "copy_bandwidth": copy_bandwidth(),
            "machine": twin_info(torch, args.threads)}


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], body, add_child_args))
