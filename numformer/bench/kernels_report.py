"""The kernels benchmark's reports: the Markdown tables, the 1-thread targets and
the plot (see numformer/bench/kernels.py)."""

from __future__ import annotations

import os
from pathlib import Path

from numformer.bench.kernels import OPS, _group


def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def markdown(runs: list[dict], first: dict | None) -> str:
    from numformer.bench.harness import fmt_blas, fmt_spread
    lines = []
    for run in runs:
        n = run["machine"]["threads"]
        lines += [f"### {n} thread{'s' if n > 1 else ''}", ""]
        for side, load in (run.get("load_average") or {}).items():
            if load and load[0] and load[1]:
                lines += [f"1-minute load average before / after the {side} process: "
                          f"{load[0][0]:.1f} / {load[1][0]:.1f} (the run itself accounts for "
                          f"about {n}; more means other processes shared the machine's "
                          f"{os.cpu_count()} cores)", ""]
        for side, peak in (run.get("gemm_peak") or {}).items():
            lines += [f"GEMM peak of the {side} process (1024^3 float32): "
                      f"{peak['gflops']:.0f} GFLOP/s", ""]
        for side, blas in (run["machine"].get("blas") or {}).items():
            lines += [f"BLAS, {side}: {fmt_blas(blas)}", ""]
        lines += ["| op | shape | implementation | ms [min-max] | GB/s | peak extra MB "
                  "| ms / best torch ms |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for r in run["rows"]:
            shape = "x".join(map(str, r["shape"]))
            lines.append(f"| {r['op']} | {shape} | {r['impl']} | {fmt_spread(r, '.3f')} | "
                         f"{r['gbps']:.1f} | {_fmt(r['peak_mb'], '.1f')} | "
                         f"{_fmt(r['ratio'], '.2f')} |")
        lines.append("")
    if first:
        lines += ["### First calls in a fresh process (1 thread)", "",
                  "Seconds from loading the kernel module (numba's import and its cache "
                  "included; `import numformer` loads neither) to the end of the first "
                  "forward+backward "
                  "(Adam: step) of a small input (64x32, the serial kernels), and then of a "
                  "large one as well (1024x256, the parallel drivers too). Cold: compiling "
                  "into an empty numba cache; warm: a second process loading that cache.", "",
                  "| kernel module | cold: small | cold: small + large | warm: small "
                  "| warm: small + large |",
                  "|---|---:|---:|---:|---:|"]
        for op, r in first.items():
            c, w = r["cold"], r["warm"]
            lines.append(f"| {op} | {c['small_s']:.2f} | {c['total_s']:.2f} | "
                         f"{w['small_s']:.2f} | {w['total_s']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def targets(runs: list[dict]) -> str:
    """1 thread, the issue's target: the kernel at least as fast as torch's best variant."""
    run = next((r for r in runs if r["machine"]["threads"] == 1), None)
    if run is None:
        return ""
    lines = ["### Target (1 thread): numba kernel at least as fast as the fastest torch", "",
             "| op | shape | numba ms | best torch ms (which) | numba <= torch |",
             "|---|---|---:|---:|---|"]
    keys = []
    for r in run["rows"]:
        k = (r["op"], tuple(r["shape"]))
        if k not in keys:
            keys.append(k)
    for op, shape in keys:
        rows = [r for r in run["rows"] if r["op"] == op and tuple(r["shape"]) == shape]
        for nb in (r for r in rows if r["impl"].startswith("numformer numba")):
            pool = [r for r in rows if r["impl"].startswith("torch")
                    and _group(r["impl"]) == _group(nb["impl"])]
            best = min(pool, key=lambda r: r["ms"], default=None)
            ok = "-" if best is None else ("yes" if nb["ms"] <= best["ms"] else "no")
            label = f"{op} {_group(nb['impl'])}".strip()
            lines.append(f"| {label} | {'x'.join(map(str, shape))} | {nb['ms']:.3f} | "
                         f"{_fmt(best and best['ms'], '.3f')} ({best['impl'] if best else '-'}) "
                         f"| {ok} |")
    return "\n".join(lines)


def plot(runs: list[dict], path: Path) -> bool:
    from numformer.bench.harness import pyplot_or_none
    plt = pyplot_or_none()
    if plt is None:
        return False
    import matplotlib.ticker
    ops = [op for op in OPS if any(r["op"] == op for run in runs for r in run["rows"])]
    ncols = min(2, len(ops))
    nrows = -(-len(ops) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.0 * ncols, 4.4 * nrows), squeeze=False)
    for ax in axes.flat[len(ops):]:
        ax.axis("off")
    for ax, op in zip(axes.flat, ops):
        labels, series = [], {}
        for run in runs:
            n = run["machine"]["threads"]
            for r in run["rows"]:
                if r["op"] != op or r["impl"].startswith("torch") or r["ratio"] is None:
                    continue
                case = f"{'x'.join(map(str, r['shape']))}\n{n} thr"
                if case not in labels:
                    labels.append(case)
                series.setdefault(r["impl"].replace("numformer ", ""), {})[case] = r["ratio"]
        width = 0.8 / max(1, len(series))
        colors = {"numba": "tab:blue", "numba AdamW": "tab:blue", "numba Adam": "lightskyblue",
                  "numpy": "tab:orange", "numpy AdamW": "tab:orange", "numpy Adam": "navajowhite"}
        for i, (impl, vals) in enumerate(sorted(series.items(), key=lambda kv: kv[0][::-1])):
            xs = [j + i * width for j, c in enumerate(labels) if c in vals]
            ax.bar(xs, [vals[c] for c in labels if c in vals], width, label=impl,
                   color=colors.get(impl))
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks([j + (len(series) - 1) * width / 2 for j in range(len(labels))])
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylabel("ms / fastest torch ms (below 1: faster)")
        ax.set_title(op)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


