"""SmolLM2-135M (float32, one GGUF file for both sides): numformer against
transformers + PyTorch eager on the CPU, in tokens per second.

Phases (each at 1 and 2 threads, each side in a process of its own):
    prefill   one forward of a P-token prompt (default P=512) into an empty
              key-value cache, logits at every position
    decode    N greedy steps (default N=128), one token each against the cache
              (the prefill before them is not timed)
    full      one fine-tuning step on B x T tokens (default 8 x 256): forward,
              cross-entropy, backward, AdamW on every parameter
    lora      the same step with rank-8 adapters on every attention and MLP
              projection (numformer.nn.lora.add_lora), base weights frozen

How it is fair:
- The same work: the parent tokenizes one text with the model's BPE tokenizer
  and writes the prompt, the training batch and the LoRA adapters' initial
  values (``lora_init``) to an .npz; both sides read it and both load the same
  GGUF file (transformers dequantizes it with its own code).
- The same model, checked before any torch timing (``gate``): prefill logits
  (max |difference| over the logits' range), the N greedy tokens (equal), and
  for a small training batch (``CHECK_BATCH``) the loss and the gradients of
  weights of the first and the last block, full and LoRA (adapters with B != 0,
  so their forward counts). Dropout is 0 in SmolLM2 (both sides).
- The competitor at its best and alone: benchmarks/twins/llm.py (in the
  repository) loads ``AutoModelForCausalLM`` with its default attention (SDPA),
  runs inference under ``torch.inference_mode()``, trains with
  ``torch.optim.AdamW(fused=True)`` and ``use_cache=False``, and never loads
  numformer's kernels or runtime settings (its JSON holds the evidence).
- Each time is the median of repeats with min, quartiles and max; the load
  average before and after; each side's BLAS (threadpoolctl), its own matmul
  peak (1024^3 float32 at the thread count: np.matmul, torch.mm) and the copy
  bandwidth (np.copyto of 512 MB, read + written bytes over the time, median).

Rooflines: prefill and training as the fraction of the side's matmul peak
(``prefill_flops``, ``train_flops``: matmul FLOPs only); decode as the fraction
of the memory-bandwidth bound, every weight read once per token plus the
cached keys and values (``decode_bytes``) at the copy bandwidth.

    python benchmarks/llm.py --quick                 # tiny sizes, 1 thread: a smoke run
    python benchmarks/llm.py --threads 1 2 --json benchmarks/results/llm.json
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

FULL = dict(prompt=512, new_tokens=128, B=8, T=256, rank=8, repeats=3)
QUICK = dict(prompt=32, new_tokens=8, B=1, T=32, rank=8, repeats=2)
CHECK_BATCH = dict(B=1, T=64)  # the gate's training batch (capped by the timed one)
PHASES = ("prefill", "decode", "full", "lora")
ADAMW = dict(lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
LORA_TARGETS = ("Wqkv", "Wo", "w_gate", "w_up", "w_down")  # numformer's names, per block
# The agreement gate, float32 through 30 blocks (summation orders differ):
# prefill logits within 1e-4 of their range; loss relative 1e-5; each checked
# gradient within 1e-3 of its largest magnitude (sums over every token of the batch).
GATE_TOL = {"logits_rel": 1e-4, "loss_rtol": 1e-5, "grad_rel": 1e-3}
SELF = "numformer.bench.llm"
TWIN = "benchmarks.twins.llm"
TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was "
        "the age of foolishness. The river ran fast under the old stone bridge, and the miller "
        "counted sacks of flour while the children argued about numbers: 3.14, 2718, 1e-5. "
        "def area(r):\n    return 3.14159 * r ** 2\n\nA transformer reads tokens, mixes them "
        "with attention, and predicts the next one; its gradients flow back through every "
        "layer. Paris is the capital of France; Tokyo is the capital of Japan. ")


# -- the work's size -------------------------------------------------------------------

def dense_per_layer(s: dict) -> int:
    """Weights of one block's projections: Wqkv (C, (H + 2 Hkv) D), Wo, SwiGLU's three."""
    return s["C"] * (s["H"] + 2 * s["Hkv"]) * s["D"] + s["C"] * s["H"] * s["D"] \
        + 3 * s["C"] * s["F"]


def attention_flops(s: dict, T: int, offset: int = 0) -> float:
    """q.k and p.v of T queries at positions offset.. over the keys each may see
    (causal: position t sees t + 1 keys), every layer, forward."""
    keys = T * offset + T * (T + 1) // 2
    return float(s["L"] * 2 * 2 * s["H"] * s["D"] * keys)


def prefill_flops(s: dict, P: int) -> float:
    """Matmul FLOPs of a P-token forward: the projections, attention, the head at
    every position."""
    return float(P * 2 * (s["L"] * dense_per_layer(s) + s["C"] * s["V"])) + attention_flops(s, P)


def lora_flops(s: dict, N: int, r: int) -> float:
    """Forward FLOPs of the adapters ``(x A) B`` on N rows, every block."""
    qkv = (s["H"] + 2 * s["Hkv"]) * s["D"]
    io = [(s["C"], qkv), (s["H"] * s["D"], s["C"]), (s["C"], s["F"]), (s["C"], s["F"]),
          (s["F"], s["C"])]
    return float(s["L"] * sum(2 * N * r * (ci + co) for ci, co in io))


def train_flops(s: dict, B: int, T: int, lora_rank: int = 0) -> float:
    """Matmul FLOPs of one step on B x T tokens. Full: forward, then twice that
    (input and weight gradients). LoRA: the frozen weights need the input gradient
    only (forward x 2), attention x 3, the adapters x 3."""
    N = B * T
    dense = N * 2 * (s["L"] * dense_per_layer(s) + s["C"] * s["V"])
    attn = B * attention_flops(s, T)
    if not lora_rank:
        return 3.0 * (dense + attn)
    return 2.0 * dense + 3.0 * attn + 3.0 * lora_flops(s, N, lora_rank)


def decode_bytes(s: dict, prompt: int, new_tokens: int, itemsize: int = 4) -> float:
    """Bytes read per decoded token, averaged over the steps: every projection and
    the head once (one embedding row, the norms: negligible), and the cached keys
    and values of every layer (S = prompt + i at step i)."""
    weights = s["L"] * dense_per_layer(s) + s["C"] * s["V"]
    s_avg = prompt + (new_tokens + 1) / 2.0
    kv = s["L"] * 2 * s["Hkv"] * s["D"] * s_avg
    return float(itemsize * (weights + kv))


def copy_bandwidth(mb: int = 512, repeats: int = 5) -> dict:
    """np.copyto of an ``mb`` MB float32 array: GB/s of bytes read plus written, at
    the median, the slowest and the fastest sample."""
    import numpy as np

    from numformer.bench.harness import time_call
    src = np.ones(mb * (1 << 20) // 4, dtype=np.float32)
    dst = np.empty_like(src)
    t = time_call(lambda: np.copyto(dst, src), repeats=repeats, warmup=1, min_time=0.0)
    gb = 2 * src.nbytes / 1e9
    return {"gbps": gb / (t["ms"] * 1e-3), "gbps_min": gb / (t["max_ms"] * 1e-3),
            "gbps_max": gb / (t["min_ms"] * 1e-3), "mb": mb}


# -- the case both sides read -------------------------------------------------------

def lora_init(s: dict, rank: int, seed: int = 0) -> dict:
    """Adapters' initial values by numformer weight name: A ~ N(0, 1/C_in), B ~
    N(0, 0.02) (B != 0, so the gate sees the adapters in the forward pass)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    qkv = (s["H"] + 2 * s["Hkv"]) * s["D"]
    io = {"attn.Wqkv": (s["C"], qkv), "attn.Wo": (s["H"] * s["D"], s["C"]),
          "ffn.w_gate": (s["C"], s["F"]), "ffn.w_up": (s["C"], s["F"]),
          "ffn.w_down": (s["F"], s["C"])}
    out = {}
    for i in range(s["L"]):
        for w, (ci, co) in io.items():
            name = f"body.encoder.blocks.{i}.{w}"
            out[name + ":A"] = (rng.standard_normal((ci, rank)) / np.sqrt(ci)).astype(np.float32)
            out[name + ":B"] = (0.02 * rng.standard_normal((rank, co))).astype(np.float32)
    return out


def checked_grads(s: dict) -> list:
    """numformer names of the gradients the gate compares (first and last block)."""
    last = s["L"] - 1
    return ["body.encoder.blocks.0.attn.Wqkv", "body.encoder.blocks.0.ffn.w_down",
            "body.encoder.blocks.0.ln1.weight", f"body.encoder.blocks.{last}.attn.Wo",
            f"body.encoder.blocks.{last}.ffn.w_gate", f"body.encoder.blocks.{last}.ln2.weight",
            "body.encoder.final_norm.weight"]


def checked_lora(s: dict) -> list:
    last = s["L"] - 1
    return [f"body.encoder.blocks.{i}.{w}:{ab}" for i in (0, last)
            for w in ("attn.Wqkv", "ffn.w_down") for ab in ("A", "B")]


def write_case(path: Path, work: dict, gguf: Path) -> Path:
    """Token ids (prompt (1, P), batch x (B, T) with targets y), the check batch,
    the adapters' initial values and the model's sizes, for both sides."""
    import numpy as np

    from numformer.bench.harness import save_npz
    from numformer.pretrained.bpe import BPETokenizer
    from numformer.pretrained.gguf import read_gguf
    g = read_gguf(gguf)
    c = g.config
    s = {"V": c["vocab_size"], "C": c["dim"], "F": c["d_ff"], "L": c["n_layers"],
         "H": c["n_heads"], "Hkv": c["n_kv_heads"], "D": c["dim"] // c["n_heads"]}
    ids = np.array(BPETokenizer.from_gguf(g).encode(TEXT), dtype=np.int64)
    need = max(work["prompt"], work["B"] * (work["T"] + 1))
    ids = np.tile(ids, need // len(ids) + 1)[:need]
    batch = ids[:work["B"] * (work["T"] + 1)].reshape(work["B"], work["T"] + 1)
    cb, ct = min(CHECK_BATCH["B"], work["B"]), min(CHECK_BATCH["T"], work["T"])
    arrays = {"prompt": ids[None, :work["prompt"]], "x": batch[:, :-1], "y": batch[:, 1:],
              "check_x": batch[:cb, :ct], "check_y": batch[:cb, 1:ct + 1]}
    arrays.update({"lora:" + k: v for k, v in lora_init(s, work["rank"]).items()})
    arrays["meta"] = {"work": work, "sizes": s, "gguf": str(gguf), "adamw": ADAMW,
                      "checked_grads": checked_grads(s), "checked_lora": checked_lora(s)}
    return save_npz(path, arrays)


# -- numformer's side -----------------------------------------------------------------

def numformer_model(case: dict):
    from numformer.pretrained.llama import load_llama
    model, _ = load_llama(case["meta"]["gguf"])
    return model


def numformer_lora(model, case: dict) -> None:
    """Rank-r adapters on every projection, their values from the case."""
    from numformer.nn.lora import add_lora
    rank = case["meta"]["work"]["rank"]
    add_lora(model, rank=rank, targets=tuple("*" + w for w in LORA_TARGETS))
    params = dict(model.named_parameters())
    for key, v in case.items():
        if key.startswith("lora:"):
            name, ab = key[5:].rsplit(":", 1)
            prefix, w = name.rsplit(".", 1)
            params[f"{prefix}.lora_{w}.{ab}"].value[...] = v


def prefill(model, ids):
    """Logits (1, P, V) of the prompt, and the filled cache."""
    cache = model.new_cache()
    return model(ids, kv_cache=cache), cache


def greedy(model, logits, cache, n: int, clock=None):
    """n greedy steps after a prefill's logits; returns the n + 1 chosen ids."""
    import time

    import numpy as np
    out = [int(np.argmax(logits[0, -1]))]
    t0 = time.perf_counter()
    for _ in range(n):
        logits = model(np.array([[out[-1]]], dtype=np.int64), kv_cache=cache)
        out.append(int(np.argmax(logits[0, -1])))
    if clock is not None:
        clock.append(time.perf_counter() - t0)
    return out


def train_closure(model, x, y, lora: bool):
    """One fine-tuning step (forward, loss, backward, AdamW) and a loss-and-grad call."""
    from numformer import nn, optim
    h = ADAMW
    model.train()
    opt = optim.AdamW(model, lr=h["lr"], betas=h["betas"], eps=h["eps"],
                      weight_decay=h["weight_decay"], no_decay="auto")
    loss_fn = nn.CrossEntropyLoss()

    def loss_and_backward(xb=x, yb=y):
        model.zero_grad()
        loss = loss_fn(model(xb), yb)  # logits (B, T, V)
        model.backward(loss_fn.backward())
        return float(loss)

    def step():
        loss = loss_and_backward()
        opt.step()
        return loss
    return step, loss_and_backward


def numformer_check(case: dict) -> dict:
    """The gate's arrays: prefill logits, greedy ids, loss and checked gradients of
    the check batch (full, then LoRA)."""
    import numpy as np
    m = case["meta"]
    model = numformer_model(case)
    logits, cache = prefill(model, case["prompt"])
    out = {"logits": logits, "greedy": np.array(greedy(model, logits, cache,
                                                       m["work"]["new_tokens"]))}
    for tag in ("full", "lora"):
        if tag == "lora":
            numformer_lora(model, case)
        _, lb = train_closure(model, case["check_x"], case["check_y"], tag == "lora")
        out[f"{tag}:loss"] = np.array(lb())
        params = dict(model.named_parameters())
        names = m["checked_grads"] if tag == "full" else [
            "{}.lora_{}.{}".format(*k.rsplit(":", 1)[0].rsplit(".", 1), k[-1])
            for k in m["checked_lora"]]
        for key, name in zip(m["checked_grads"] if tag == "full" else m["checked_lora"], names):
            out[f"{tag}:grad:{key}"] = params[name].grad.copy()
        if tag == "lora":  # the frozen base keeps no gradient
            out["lora:base_grads"] = np.array(sum(p.grad is not None for n, p in params.items()
                                                  if ".lora_" not in n))
        model.eval()
    return out


def timed_phases(model, case: dict, repeats: int, phases) -> dict:
    """Each phase's spread of seconds per call (decode: the steps after the prefill)."""
    from numformer.bench.harness import spread, time_call
    w, times = case["meta"]["work"], {}
    ids = case["prompt"]
    if "prefill" in phases:
        times["prefill"] = time_call(lambda: prefill(model, ids), repeats=repeats, warmup=1,
                                     min_time=0.0)
    if "decode" in phases:
        clock = []
        for _ in range(repeats + 1):  # the first: warm-up
            logits, cache = prefill(model, ids)
            greedy(model, logits, cache, w["new_tokens"], clock)
        times["decode"] = dict(spread(clock[1:]), first_ms=1e3 * clock[0])
    for tag in ("full", "lora"):
        if tag not in phases:
            continue
        if tag == "lora":
            numformer_lora(model, case)
        step, _ = train_closure(model, case["x"], case["y"], tag == "lora")
        times[tag] = time_call(step, repeats=repeats, warmup=1, min_time=0.0)
        model.eval()
    return times


def child_body(args) -> dict:
    """The numformer side in its own process: the gate's arrays, or the timings."""
    from numformer.bench.harness import load_average, load_npz, save_npz
    case = load_npz(args.case)
    if args.mode == "check":
        save_npz(args.arrays, numformer_check(case))
        return {}
    import numformer
    from numformer.bench.harness import blas_info, machine_info, numpy_gemm_peak
    from numformer.bench.train_step import _numba_threads
    _numba_threads(args.threads)
    model = numformer_model(case)
    load_before = load_average()
    times = timed_phases(model, case, args.repeats, args.phases.split(","))
    info = machine_info(args.threads)
    info["blas"] = blas_info()
    from numformer.ops import _alloc
    return {"times": times, "backend": numformer.get_backend(),
            "small_matmul_one_thread": bool(_alloc._blas_controllers()),
            "load": [load_before, load_average()], "gemm_peak": numpy_gemm_peak(),
            "copy_bandwidth": copy_bandwidth(), "machine": info}


def add_child_args(p) -> None:
    p.add_argument("--case", required=True)
    p.add_argument("--mode", choices=("check", "time"), required=True)
    p.add_argument("--arrays", help="check: where to write the arrays; time (twin): "
                                    "numformer's arrays, compared before timing")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--phases", default=",".join(PHASES))


if __name__ == "__main__":
    os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
    from numformer.bench.llm_run import main
    sys.exit(main())
