"""``numformer bench compare A.json B.json``: two attention benchmark runs side by side
(two machines, two versions, two settings).

Prints what differs between the runs' machines (CPU, cores, versions, BLAS,
peaks) and questions, then one row per case both runs timed (implementation,
threads, mask, Tk, pass): A's and B's median ms, B / A, and each one's %
of its own machine's matmul peak (which is what makes runs on two machines
comparable). Cases only one run has are counted, not shown. ``--out FILE``
writes the Markdown too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load(path) -> dict:
    """The document at ``path``, validated (an error naming the file otherwise)."""
    from numformer.bench.attention_report import validate
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"compare: no file {p}")
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"compare: {p} is not JSON ({e})") from None
    try:
        return validate(doc, str(p))
    except ValueError as e:
        raise SystemExit(f"compare: {e}") from None


def _key(r: dict) -> tuple:
    return (r["impl"], r["threads"], r["mask"], r["Tk"], r["what"])


def _blas(doc: dict) -> str:
    from numformer.bench.harness import fmt_blas
    return "; ".join(sorted({fmt_blas(p.get("blas") or []) for p in doc["processes"]}))


def _peaks(doc: dict) -> str:
    return ", ".join(f"{n} thr matmul {_f(pk.get('matmul_best'), '.0f')} / FMA "
                     f"{pk['fma']['gflops']:.0f}" for n, pk in sorted(doc["peaks"].items()))


def _f(x, spec):
    return "-" if x is None else format(x, spec)


def compare(a: dict, b: dict, names=("A", "B")) -> str:
    """The Markdown comparison of documents ``a`` and ``b``."""
    from numformer.bench.attention import PASSES
    na, nb = names
    lines = [f"# Attention benchmark: {na} vs {nb}", "",
             f"- {na}: `{a['command']}`", f"- {nb}: `{b['command']}`", "",
             "| | " + na + " | " + nb + " |", "|---|---|---|"]
    keys = list(dict.fromkeys([*a["machine"], *b["machine"]]))
    for k in keys:
        va, vb = a["machine"].get(k, "-"), b["machine"].get(k, "-")
        lines.append(f"| {k}{' (differs)' if va != vb else ''} | {va} | {vb} |")
    for label, fa, fb in (("BLAS", _blas(a), _blas(b)), ("peaks GFLOP/s", _peaks(a), _peaks(b)),
                          ("load at start", a.get("loadavg_start"), b.get("loadavg_start"))):
        lines.append(f"| {label}{' (differs)' if fa != fb else ''} | {fa} | {fb} |")
    qa, qb = a["question"], b["question"]
    for k in ("B", "H", "Hkv", "D", "Tq", "dtype", "pad_fraction"):
        if qa.get(k) != qb.get(k):
            lines.append(f"| question: {k} (differs) | {qa.get(k)} | {qb.get(k)} |")
    lines.append("")
    same_shape = all(qa.get(k) == qb.get(k) for k in ("B", "H", "Hkv", "D", "Tq", "dtype",
                                                      "pad_fraction"))
    ib = {_key(r): r for r in b["rows"]}
    common = [r for r in a["rows"] if _key(r) in ib]
    if not same_shape:
        lines += ["The questions differ in shape or dtype: the same (implementation, "
                  "threads, mask, Tk, pass) is not the same work, so no row is compared.", ""]
        common = []
    lines += [f"| implementation | threads | mask | Tk | pass | {na} ms | {nb} ms | "
              f"{nb} / {na} | {na} % matmul peak | {nb} % matmul peak |",
              "|---|---:|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in sorted(common, key=lambda r: (r["threads"], r["mask"], r["Tk"],
                                           PASSES.index(r["what"]), r["impl"])):
        s = ib[_key(r)]
        lines.append(f"| {r['impl']} | {r['threads']} | {r['mask']} | {r['Tk']} | {r['what']} | "
                     f"{r['ms']:.3g} | {s['ms']:.3g} | {s['ms'] / r['ms']:.2f} | "
                     f"{_f(r['pct_matmul_peak'], '.0f')} | {_f(s['pct_matmul_peak'], '.0f')} |")
    only_a = len(a["rows"]) - len(common)
    only_b = len(b["rows"]) - len(common)
    lines += ["", f"{len(common)} cases in both; {only_a} only in {na}, {only_b} only in {nb}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="numformer bench compare", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("a", help="first run's JSON (numformer bench attention writes it)")
    p.add_argument("b", help="second run's JSON")
    p.add_argument("--out", default=None, help="also write the Markdown to this file")
    args = p.parse_args(argv)
    md = compare(load(args.a), load(args.b), (Path(args.a).stem + " (A)",
                                              Path(args.b).stem + " (B)"))
    print(md)
    if args.out:
        from numformer.bench.harness import write_atomic
        write_atomic(Path(args.out), md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
