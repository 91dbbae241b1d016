"""The PyTorch twin of numformer's training step (numformer/bench/train_step.py):
the same model (learned positions, GELU, post-LN or pre-LN blocks, attention
by scaled_dot_product_attention without dropout on the probabilities, dropout
after the attention and the feed-forward output, the masked-LM head with a
decoder tied to the embedding, or the causal LM's head), the same weights and
batch (read from the case file the parent wrote), the same AdamW (weight decay
on matrices only).

The competitor at its best: ``torch.optim.AdamW(fused=True)`` is the step that
is reported; the default for-loop implementation is timed beside it. SDPA
gets ``attn_mask=None`` when no key is padded (an all-True mask would be read
for nothing) and ``is_causal=True`` for the causal LM; the backend SDPA picks
is recorded. This process never imports numformer's kernels or runtime
settings (its JSON holds the evidence, ``runtime``).

    python -m benchmarks.twins.train_step --threads 1 --out r.json --case case.npz --mode time \
        --gate numformer_arrays.npz
"""

from __future__ import annotations

import sys

from benchmarks.twins._torch import sdpa_choice, torch_gemm_peak, torch_pinned, twin_info
from numformer.bench.harness import child_main, load_npz, load_average, save_npz, \
    time_interleaved


def twin_model(c: dict, dropout: float, torch):
    nnt, F = torch.nn, torch.nn.functional
    causal = c["task"] == "lm"

    class Block(nnt.Module):
        def __init__(self):
            super().__init__()
            C = c["C"]
            self.qkv, self.proj = nnt.Linear(C, 3 * C), nnt.Linear(C, C)
            self.ln1, self.ln2 = nnt.LayerNorm(C), nnt.LayerNorm(C)
            self.fc1, self.fc2 = nnt.Linear(C, c["F"]), nnt.Linear(c["F"], C)
            self.drop = nnt.Dropout(dropout)

        def attn(self, x, mask):
            B, T, C = x.shape
            q, k, v = self.qkv(x).view(B, T, 3, c["H"], C // c["H"]).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
            return self.drop(self.proj(o.transpose(1, 2).reshape(B, T, C)))

        def ffn(self, x):
            return self.drop(self.fc2(F.gelu(self.fc1(x))))

        def forward(self, x, mask):
            if c["norm_first"]:
                x = x + self.attn(self.ln1(x), mask)
                return x + self.ffn(self.ln2(x))
            x = self.ln1(x + self.attn(x, mask))
            return self.ln2(x + self.ffn(x))

    class Model(nnt.Module):
        def __init__(self):
            super().__init__()
            C, V = c["C"], c["V"]
            self.tok = nnt.Embedding(V, C)
            self.pos = nnt.Parameter(torch.zeros(c["T"], C))
            self.drop = nnt.Dropout(dropout)
            self.blocks = nnt.ModuleList(Block() for _ in range(c["L"]))
            self.final = nnt.LayerNorm(C) if c["norm_first"] else None
            if c["task"] == "mlm":
                self.dense, self.norm = nnt.Linear(C, C), nnt.LayerNorm(C)
                self.bias = nnt.Parameter(torch.zeros(V))
            else:
                self.head = nnt.Linear(C, V, bias=False)

        def forward(self, ids, mask=None, positions=None):
            x = self.drop(self.tok(ids) + self.pos[:ids.shape[1]])
            for b in self.blocks:
                x = b(x, mask)
            if self.final is not None:
                x = self.final(x)
            if c["task"] == "lm":
                return self.head(x)
            h = x.reshape(-1, x.shape[-1])[positions]
            return self.norm(F.gelu(self.dense(h))) @ self.tok.weight.T + self.bias

    return Model()


def named_twins(tm, c: dict) -> dict:
    """numformer's parameter name -> (torch parameter, transposed?): torch's Linear
    weights are (out, in), numformer's (in, out)."""
    names = {"body.tok.weight": (tm.tok.weight, False), "body.pos.weight": (tm.pos, False)}
    for i, b in enumerate(tm.blocks):
        p = f"body.encoder.blocks.{i}."
        for nf, mod, attr, transposed in (
                ("attn.Wqkv", b.qkv, "weight", True), ("attn.bqkv", b.qkv, "bias", False),
                ("attn.Wo", b.proj, "weight", True), ("attn.bo", b.proj, "bias", False),
                ("ffn.fc1.weight", b.fc1, "weight", True), ("ffn.fc1.bias", b.fc1, "bias", False),
                ("ffn.fc2.weight", b.fc2, "weight", True), ("ffn.fc2.bias", b.fc2, "bias", False),
                ("ln1.gamma", b.ln1, "weight", False), ("ln1.beta", b.ln1, "bias", False),
                ("ln2.gamma", b.ln2, "weight", False), ("ln2.beta", b.ln2, "bias", False)):
            names[p + nf] = (getattr(mod, attr), transposed)
    if tm.final is not None:
        names["body.encoder.final_norm.gamma"] = (tm.final.weight, False)
        names["body.encoder.final_norm.beta"] = (tm.final.bias, False)
    if c["task"] == "mlm":
        names.update({"head.dense.weight": (tm.dense.weight, True),
                      "head.dense.bias": (tm.dense.bias, False),
                      "head.norm.gamma": (tm.norm.weight, False),
                      "head.norm.beta": (tm.norm.bias, False),
                      "head.decoder_bias": (tm.bias, False)})
    else:
        names["head.weight"] = (tm.head.weight, True)
    return names


def build(case: dict, dropout: float, torch, fused: bool, adamw: str = "adamw"):
    """The twin with the case's weights, its AdamW (settings ``meta[adamw]``), and
    step/loss closures."""
    c, h = case["meta"]["config"], case["meta"][adamw]
    tm = twin_model(c, dropout, torch)
    names = named_twins(tm, c)
    missing = sorted(set(k[2:] for k in case if k.startswith("w:")) ^ set(names))
    if missing:
        raise KeyError(f"twin and numformer parameters differ: {missing}")
    with torch.no_grad():
        for name, (p, transposed) in names.items():
            w = torch.from_numpy(case["w:" + name])
            p.copy_(w.T if transposed else w)
    decay = [p for p in tm.parameters() if p.dim() >= 2]  # numformer's no_decay="auto"
    rest = [p for p in tm.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": h["weight_decay"]},
                             {"params": rest, "weight_decay": 0.0}], lr=h["lr"],
                            betas=tuple(h["betas"]), eps=h["eps"],
                            **({"fused": True} if fused else {"foreach": False}))
    F = torch.nn.functional
    ids = torch.from_numpy(case["b:ids"])
    tgt = torch.from_numpy(case["b:targets"])
    mask = None
    if c["task"] == "mlm":
        km = case["b:key_mask"]
        # an all-True mask changes nothing but is read at every layer: None then
        mask = None if km.all() else torch.from_numpy(km)[:, None, None, :]
        pos = torch.from_numpy(case["b:positions"])

    def loss_fn():
        if c["task"] == "mlm":
            return F.cross_entropy(tm(ids, mask, pos), tgt)
        return F.cross_entropy(tm(ids).reshape(-1, c["V"]), tgt.reshape(-1))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        return loss.item()
    B, T, C = c["B"], c["T"], c["C"]
    q = torch.zeros(B, c["H"], T, C // c["H"])
    path = sdpa_choice(torch, q, q, q, mask, c["task"] == "lm")
    return tm, names, step, loss_fn, {"attn_mask": "None" if mask is None else "bool (B,1,1,T)",
                                      "is_causal": c["task"] == "lm", "sdpa_backend": path}


def check(case: dict, torch, arrays_path: str | None = None) -> dict:
    """Dropout 0: the loss, every gradient, every parameter after one AdamW step
    (fused and for-loop), in numformer's layout (saved to ``arrays_path`` if given)."""
    out, info = {}, {}
    for fused in (True, False):
        tm, names, step, loss_fn, info = build(case, 0.0, torch, fused, "adamw_check")
        tag = "fused" if fused else "for-loop"
        loss = loss_fn()
        loss.backward()
        out[f"{tag}:loss"] = loss.detach().numpy()
        for name, (p, tr) in names.items():
            g = p.grad.T if tr else p.grad
            out[f"{tag}:grad:{name}"] = g.contiguous().numpy().copy()
        step()  # recomputes the same gradients (dropout 0) and applies them
        for name, (p, tr) in names.items():
            v = p.detach().T if tr else p.detach()
            out[f"{tag}:param:{name}"] = v.contiguous().numpy().copy()
    if arrays_path:
        save_npz(arrays_path, out)
    return {"path": info, "arrays": out}


def body(args) -> dict:
    torch = torch_pinned(args.threads)
    case = load_npz(args.case)
    if args.mode == "check":
        return {"path": check(case, torch, args.arrays)["path"]}
    result = {}
    if args.gate:  # numformer's arrays: the same model and algorithm, before any timing
        from numformer.bench.train_step import gate_twins
        result["check"] = gate_twins(load_npz(args.gate), check(case, torch)["arrays"])
    load_before = load_average()
    steps = {}
    for fused in (True, False):
        tm, _, step, _, path = build(case, args.dropout, torch, fused)
        tm.train()
        steps["torch fused AdamW" if fused else "torch for-loop AdamW"] = step
    times = time_interleaved(steps, args.repeats, min_time=0.0, warmup=3)
    return {**result, "times": times, "path": path, "load": [load_before, load_average()],
            "gemm_peak": torch_gemm_peak(torch), "machine": twin_info(torch, args.threads)}


def add_args(p) -> None:
    p.add_argument("--case", required=True)
    p.add_argument("--mode", choices=("check", "time"), required=True)
    p.add_argument("--arrays", help="check: where to write the arrays")
    p.add_argument("--gate", help="time: numformer's arrays, compared before timing")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=7)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], body, add_args))
