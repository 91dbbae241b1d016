"""The attention benchmark's outputs: the JSON schema (``validate``), the Markdown
report, the two plots, and the issue's goals read off a document."""

from __future__ import annotations

from pathlib import Path

from numformer.bench.attention import PASSES, SCHEMA

# key -> type(s) of the document's top level, a row, a check and a thread count's peaks
TOP = {"schema": str, "command": str, "question": dict, "machine": dict, "peaks": dict,
       "processes": list, "checks": list, "refused": list, "unavailable": list,
       "skipped": list, "rows": list, "baseline": (str, type(None)),
       "tolerance": (dict, type(None))}
QUESTION = {"B": int, "H": int, "Hkv": int, "D": int, "T": list, "Tq": (int, type(None)),
            "dtype": str, "masks": list, "pad_fraction": float, "passes": list,
            "repeats": int, "threads": list}
NUM = (int, float)
ROW = {"impl": str, "threads": int, "mask": str, "Tk": int, "Tq": int, "what": str,
       "ms": NUM, "min_ms": NUM, "q1_ms": NUM, "q3_ms": NUM, "max_ms": NUM, "repeats": int,
       "first_ms": NUM, "gflop": NUM, "gflops": NUM, "intensity": NUM, "pct_matmul_peak": (*NUM, type(None)),
       "pct_fma_peak": (*NUM, type(None)), "peak_mb": (*NUM, type(None)),
       "ratio": (*NUM, type(None))}
CHECK = {"impl": str, "mask": str, "Tk": int, "max_abs_diff": dict, "reference": str}


def _require(what: str, d: dict, spec: dict) -> None:
    for k, t in spec.items():
        if k not in d:
            raise ValueError(f"{what}: missing key {k!r}")
        if isinstance(d[k], bool) or not isinstance(d[k], t):
            if not (t is float and isinstance(d[k], int)):
                raise ValueError(f"{what}: {k!r} should be {t}, got {type(d[k]).__name__} "
                                 f"{d[k]!r}")


def validate(doc: dict, source: str = "the document") -> dict:
    """Raise ValueError naming the key if ``doc`` is not an attention benchmark
    document of this schema; return it."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{source}: expected an attention benchmark JSON with schema "
                         f"{SCHEMA!r}, got {got!r}")
    _require(source, doc, TOP)
    _require(f"{source}: question", doc["question"], QUESTION)
    for r in doc["rows"]:
        _require(f"{source}: row", r, ROW)
        if r["what"] not in PASSES:
            raise ValueError(f"{source}: row pass {r['what']!r} not in {PASSES}")
    for c in doc["checks"]:
        _require(f"{source}: check", c, CHECK)
    for n, pk in doc["peaks"].items():
        _require(f"{source}: peaks[{n}]", pk, {"matmul": dict, "fma": dict,
                                               "matmul_best": (*NUM, type(None))})
    return doc


# -- Markdown ----------------------------------------------------------------------------

def _f(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def describe_question(q: dict) -> str:
    kv = f", Hkv={q['Hkv']} (GQA, {q['H'] // q['Hkv']} query heads per kv head)" \
        if q["Hkv"] != q["H"] else ""
    tq = f", Tq={q['Tq']} queries at the end of Tk keys (decode)" if q["Tq"] else ", Tq = Tk"
    pad = f", padding = the last {q['pad_fraction']:.0%} of each sequence's keys" \
        if any("padding" in m for m in q["masks"]) else ""
    return (f"B={q['B']}, H={q['H']}{kv}, D={q['D']}{tq}, {q['dtype']}, masks "
            f"{', '.join(q['masks'])}{pad}; Tk = {', '.join(map(str, q['T']))}; "
            f"{q['repeats']} timed repeats")


def markdown(doc: dict) -> str:
    from numformer.bench.harness import fmt_blas, fmt_load
    q, m = doc["question"], doc["machine"]
    tol = doc.get("tolerance") or {}
    out = [f"# Attention: {describe_question(q)}", "",
           f"`{doc['command']}`", "",
           "Machine: " + ", ".join(f"{k} {v}" for k, v in m.items()), ""]
    for n, pk in sorted(doc["peaks"].items(), key=lambda kv: int(kv[0])):
        mm = "; ".join(f"{side} {v['gflops']:.0f}" for side, v in pk["matmul"].items())
        f = pk["fma"]
        out.append(f"- {n} thread{'s' * (int(n) > 1)}: matmul peak {mm} GFLOP/s ((1024, 1024) "
                   f"products, {q['dtype']}; % uses the best); FMA peak {f['gflops']:.0f} "
                   f"GFLOP/s ({f['how']}: {f['measured_gflops']:.0f} measured at "
                   f"{f['vector_bits_used']} bits x {f['scale']:g} for the CPU's "
                   f"{f['vector_bits_cpu']}-bit vectors)" + (
                       f"; copy bandwidth {pk['bandwidth']['gbs']:.1f} GB/s"
                       if pk.get("bandwidth") else ""))
    blas = {}
    for p in doc["processes"]:
        blas.setdefault(fmt_blas(p.get("blas") or []), []).append(p["impl"])
    out += [""] + [f"- BLAS of {', '.join(sorted(set(v)))}: {k}" for k, v in blas.items()]
    loads = "; ".join(f"{p['impl']} {p['threads']} thr {fmt_load(p['loadavg'])}"
                      for p in doc["processes"] if p.get("loadavg"))
    out += ["", f"1-minute load average of the (shared) machine before -> after each "
                f"process: {loads or '-'}", ""]
    if tol:
        out += [f"Agreement: each implementation's output and gradients against {tol['against']}"
                f", rtol={tol['rtol']:g}, atol={tol['atol']:g} ({tol['note']}), before "
                f"timing.", ""]
    out += _checks(doc) + _tables(doc) + [goals(doc)]
    return "\n".join(out)


def _checks(doc: dict) -> list:
    lines = []
    by = {}
    for c in doc["checks"]:
        by.setdefault(c["impl"], []).append(c)
    if by:
        lines += ["| implementation | cases checked | max abs difference (out, dq, dk, dv) | "
                  "reference | first call ms |", "|---|---:|---|---|---:|"]
        for impl, cs in by.items():
            worst = {k: max(c["max_abs_diff"].get(k, 0.0) for c in cs)
                     for k in cs[0]["max_abs_diff"]}
            lines.append(f"| {impl} | {len(cs)} | " + ", ".join(
                f"{k} {v:.1e}" for k, v in worst.items()) + f" | {cs[-1]['reference']} | "
                f"{_f(cs[0].get('first_call_ms'), '.0f')} |")
        lines += ["", "'first call': the process's first call (forward and backward, first "
                  "case, checked), the numba kernel's JIT compile included (into an empty "
                  "cache, unless --quick or --check-only, which keep it); never in the times.",
                  ""]
    for r in doc["refused"]:
        lines += [f"**Refused, never timed: {r['impl']}** ({r['mask']}, Tk={r['Tk']}):", "",
                  "```", r["evidence"], "```", ""]
    lines += [f"- unavailable: {u['impl']}: {u['reason']}" for u in doc["unavailable"]]
    lines += [f"- skipped: {s['impl']} at {s['mask']}, Tk={s['Tk']}: {s['reason']}"
              for s in doc["skipped"]]
    return lines + ([""] if doc["unavailable"] or doc["skipped"] else [])


def _tables(doc: dict) -> list:
    from numformer.bench.harness import fmt_spread
    q, lines = doc["question"], []
    order = list(dict.fromkeys(r["impl"] for r in doc["rows"]))
    for n in sorted({r["threads"] for r in doc["rows"]}):
        for mask in q["masks"]:
            rows = sorted((r for r in doc["rows"] if r["threads"] == n and r["mask"] == mask),
                          key=lambda r: (r["Tk"], PASSES.index(r["what"]), order.index(r["impl"])))
            if not rows:
                continue
            lines += [f"### {n} thread{'s' * (n > 1)}, mask {mask}", "",
                      f"| Tk | pass | implementation | ms median [min-max] | q1-q3 | GFLOP/s | "
                      f"% matmul peak | % FMA peak | peak extra MB | / {doc['baseline']} |", "|---:|---|---|---:|---:|---:|---:|---:|---:|"
                      "---:|"]
            for r in rows:
                lines.append(
                    f"| {r['Tk']} | {r['what']} | {r['impl']} | {fmt_spread(r, '.3g')} | "
                    f"{r['q1_ms']:.3g}-{r['q3_ms']:.3g} | "
                    f"{r['gflops']:.1f} | {_f(r['pct_matmul_peak'], '.0f')} | "
                    f"{_f(r['pct_fma_peak'], '.0f')} | {_f(r.get('peak_mb'), '.1f')} | "
                    f"{_f(r['ratio'], '.2f')} |")
            lines.append("")
    if doc["rows"]:
        lines += ["GFLOP/s counts the useful work: 4 D (forward), 8 D (backward), 12 D "
                  "(forward+backward) FLOP per visible (query, key) pair and query head; "
                  "% of the peaks of the row's thread count.", ""]
    return lines


def goals(doc: dict) -> str:
    """The issue's goals, where the document has the rows: the fused kernel at
    >= 75% of the matmul peak for Tk >= 512 at D = 64 on 1 thread; faster than
    every torch backend at every case."""
    nb = [r for r in doc["rows"] if r["impl"] == "numformer numba"]
    if not nb:
        return ""
    lines = ["### Goals", ""]
    if doc["question"]["D"] == 64:
        for r in nb:
            if r["threads"] == 1 and r["Tk"] >= 512 and r["pct_matmul_peak"] is not None:
                ok = "met" if r["pct_matmul_peak"] >= 75 else "missed"
                lines.append(f"- 75% of matmul peak, {r['mask']}, Tk={r['Tk']}, {r['what']}: "
                             f"{r['pct_matmul_peak']:.0f}% ({ok})")
    index = {(r["impl"], r["threads"], r["mask"], r["Tk"], r["what"]): r for r in doc["rows"]}
    slower = []
    for r in nb:
        for t in {x["impl"] for x in doc["rows"] if x["impl"].startswith("torch")}:
            o = index.get((t, r["threads"], r["mask"], r["Tk"], r["what"]))
            if o is not None and o["ms"] < r["ms"]:
                slower.append(f"{r['threads']} thr, {r['mask']}, Tk={r['Tk']}, {r['what']}: "
                              f"numba {r['ms']:.3g} ms > {t} {o['ms']:.3g} ms")
    lines.append("- faster than every torch implementation in every case: " + (
        "yes" if not slower else "no, slower at " + "; ".join(slower)))
    return "\n".join(lines) + "\n"


def targets(runs: list[dict]) -> str:
    """The first benchmark's targets (before this tool), read off a list of its
    1-thread runs; kept for its README table."""
    run = next((r for r in runs if r["machine"]["threads"] == 1), None)
    if run is None:
        return ""

    def get(impl, T, key="ms"):
        return next((r[key] for r in run["rows"] if r["impl"] == impl and r["T"] == T
                     and r["what"] == "forward+backward"), None)
    lines = ["### Targets (1 thread, forward+backward)", "",
             "| T | numba ms | torch SDPA ms | numba <= SDPA | numpy ms | numba <= numpy / 2 |",
             "|---:|---:|---:|---|---:|---|"]
    Ts = sorted({r["T"] for r in run["rows"]})
    for T in Ts:
        nb, sd, npy = (get(i, T) for i in ("numformer numba", "torch SDPA", "numformer numpy"))
        ok1 = "-" if nb is None or sd is None or not 64 <= T <= 512 else \
            ("yes" if nb <= sd else "no")
        ok2 = "-" if nb is None or npy is None or T < 64 else ("yes" if nb <= npy / 2 else "no")
        lines.append(f"| {T} | {_f(nb, '.2f')} | {_f(sd, '.2f')} | {ok1} | {_f(npy, '.2f')} | "
                     f"{ok2} |")
    mn, ms = get("numformer numba", max(Ts), "peak_mb"), get("torch SDPA", max(Ts), "peak_mb")
    if mn is not None and ms is not None:
        lines += ["", f"Peak extra memory at T={max(Ts)}, forward+backward: numba {mn:.1f} MB, "
                      f"torch SDPA {ms:.1f} MB ({'at most' if mn <= ms else 'more than'} SDPA)."]
    return "\n".join(lines)


# -- plots -------------------------------------------------------------------------------

def plots(doc: dict, directory: Path, name: str) -> list:
    """``<name>.png``: ms against Tk, a panel per (pass, mask); ``<name>_peak.png``:
    GFLOP/s against Tk with each thread count's matmul and FMA peaks as lines;
    ``<name>_roofline.png`` (``roofline``).
    Returns the file names written (none without matplotlib)."""
    from numformer.bench.harness import pyplot_or_none
    plt = pyplot_or_none()
    if plt is None or not doc["rows"]:
        return []
    q = doc["question"]
    passes = [p for p in PASSES if any(r["what"] == p for r in doc["rows"])]
    impls = list(dict.fromkeys(r["impl"] for r in doc["rows"]))
    colors = {i: plt.cm.tab10(k % 10) for k, i in enumerate(impls)}
    written = []
    for suffix, key, ylabel in (("", "ms", "ms (median)"), ("_peak", "gflops", "GFLOP/s")):
        fig, axes = plt.subplots(len(passes), len(q["masks"]), squeeze=False,
                                 figsize=(5.2 * len(q["masks"]), 3.8 * len(passes)))
        for i, what in enumerate(passes):
            for j, mask in enumerate(q["masks"]):
                ax = axes[i][j]
                for impl in impls:
                    for n in q["threads"]:
                        pts = sorted((r["Tk"], r[key]) for r in doc["rows"] if r["impl"] == impl
                                     and r["what"] == what and r["mask"] == mask
                                     and r["threads"] == n)
                        if pts:
                            ax.plot(*zip(*pts), marker="o", color=colors[impl],
                                    linestyle="-" if n == q["threads"][0] else "--",
                                    label=f"{impl}, {n} thr")
                if key == "gflops":
                    for n, pk in doc["peaks"].items():
                        style = "-" if int(n) == q["threads"][0] else "--"
                        if pk.get("matmul_best"):
                            ax.axhline(pk["matmul_best"], color="black", linestyle=style,
                                       linewidth=0.8, label=f"matmul peak, {n} thr")
                        ax.axhline(pk["fma"]["gflops"], color="gray", linestyle=style,
                                   linewidth=0.8, label=f"FMA peak, {n} thr")
                ax.set_xscale("log", base=2)
                ax.set_yscale("log")
                ax.set_xlabel("Tk (keys)")
                ax.set_ylabel(ylabel)
                ax.set_title(f"{what}, mask {mask}", fontsize=9)
                ax.grid(True, which="both", alpha=0.3)
        axes[0][-1].legend(fontsize=6)
        fig.suptitle(describe_question(q), fontsize=8)
        fig.tight_layout()
        fig.savefig(directory / f"{name}{suffix}.png", dpi=100)
        plt.close(fig)
        written.append(f"{name}{suffix}.png")
    return written + roofline(plt, doc, directory, name, colors)


def roofline(plt, doc: dict, directory: Path, name: str, colors: dict) -> list:
    """``<name>_roofline.png``: GFLOP/s against arithmetic intensity (useful FLOP per
    byte of least traffic), a panel per pass, a point per case (marker: mask),
    under each thread count's roofs: min(FMA peak, bandwidth x intensity), the
    matmul peak dashed."""
    import numpy as np
    q = doc["question"]
    passes = [p for p in PASSES if any(r["what"] == p for r in doc["rows"])]
    markers = dict(zip(q["masks"], "osD^"))
    fig, axes = plt.subplots(1, len(passes), squeeze=False, figsize=(5.5 * len(passes), 4.5))
    xs = [r["intensity"] for r in doc["rows"]]
    grid = np.geomspace(min(xs) / 2, max(xs) * 2, 50)
    for ax, what in zip(axes[0], passes):
        for n, pk in sorted(doc["peaks"].items()):
            style = "-" if int(n) == q["threads"][0] else ":"
            bw = (pk.get("bandwidth") or {}).get("gbs")
            roof = np.full_like(grid, pk["fma"]["gflops"]) if bw is None else \
                np.minimum(pk["fma"]["gflops"], bw * grid)
            ax.plot(grid, roof, color="black", linestyle=style, linewidth=0.9,
                    label=f"roof, {n} thr (FMA peak, copy bandwidth)")
            if pk.get("matmul_best"):
                ax.axhline(pk["matmul_best"], color="gray", linestyle="--", linewidth=0.8,
                           label=f"matmul peak, {n} thr")
        for r in doc["rows"]:
            if r["what"] == what:
                ax.scatter(r["intensity"], r["gflops"], color=colors[r["impl"]], s=18,
                           marker=markers.get(r["mask"], "o"),
                           alpha=1.0 if r["threads"] == q["threads"][0] else 0.5)
        for impl, c in colors.items():
            ax.scatter([], [], color=c, label=impl, s=18)
        for m, mk in markers.items():
            ax.scatter([], [], color="gray", marker=mk, label=f"mask {m}", s=18)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity (useful FLOP / least bytes moved)")
        ax.set_ylabel("GFLOP/s")
        pale = ", ".join(map(str, q["threads"][1:]))
        ax.set_title(what + (f" (pale: {pale} threads)" if pale else ""), fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=6)
    fig.suptitle(describe_question(q), fontsize=8)
    fig.tight_layout()
    fig.savefig(directory / f"{name}_roofline.png", dpi=100)
    plt.close(fig)
    return [f"{name}_roofline.png"]
