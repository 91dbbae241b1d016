"""Data numformer has no loader for, trained from plain files: the README rows.

Not a timing benchmark. It writes, into a folder (default: a new temporary one),

    sst2/{train,dev,test}.csv       SST-2 as CSV (sentence,label: negative/positive)
    imdb_jsonl/{train,test}.jsonl   IMDb's JSON lines (id, rating, label, text)
    imdb_folder/{train,test}/{neg,pos}/<id>_<rating>.txt
                                    the IMDb reviews as a folder of files (aclImdb layout)

from ``../shared/data`` (or $NUMFORMER_DATA), then for each of the three
computes a TF-IDF (word 1-2 grams) + logistic regression baseline with
scikit-learn on exactly the split numformer trains and tests on (the split is
numformer.data.user_data.load_labelled's: a dev split carved from train with
the same seed and fraction when no dev file is given; the baseline trains on
what numformer trains on and is scored on the same test file). scikit-learn is
not a dependency: without it the baseline is skipped, saying so.

It prints the numformer commands of each README row (from scratch with the
defaults; MiniLM fine-tuned with ``--init minilm``) and of STS-B (a zero-shot
bi-encoder: the cosine of all-MiniLM-L6-v2's sentence embeddings; a
cross-encoder: MiniLM fine-tuned as a regression on the pairs).
``--stsb-zero-shot`` also runs the bi-encoder on STS-B dev and test (a minute
on one core) and prints its Spearman and Pearson; ``--stsb-combine RUN`` scores
a fine-tuned cross-encoder run, the bi-encoder and the mean of the two's ranks.

    python benchmarks/user_data.py [--out DIR] [--imdb-limit N] [--stsb-zero-shot]
        [--stsb-combine RUN] [--json results.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NUMFORMER_DATA", REPO.parent / "shared" / "data"))
SST_NAMES = ("negative", "positive")


def write_sst2_csv(out: Path) -> dict:
    """SST-2's stsa.binary.{train,dev,test} ('LABEL TEXT' lines) as CSV files."""
    import csv
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for split in ("train", "dev", "test"):
        src = DATA / "sst" / f"stsa.binary.{split}"
        dst = out / f"{split}.csv"
        with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8", newline="") as g:
            w = csv.writer(g)
            w.writerow(["sentence", "label"])
            for line in f:
                label, _, text = line.rstrip("\n").partition(" ")
                w.writerow([text.strip(), SST_NAMES[int(label)]])
        files[split] = dst
    return files


def _imdb_rows(split: str, limit: int):
    with gzip.open(DATA / "imdb" / f"{split}.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    if limit:  # an even subset: the first `limit` of each class
        neg = [r for r in rows if r["label"] == 0][:limit // 2]
        pos = [r for r in rows if r["label"] == 1][:limit - limit // 2]
        rows = neg + pos
    return rows


def write_imdb(out_jsonl: Path, out_folder: Path, limit: int = 0) -> tuple[dict, Path]:
    """IMDb train/test as JSON lines and as aclImdb-style folders of .txt files."""
    out_jsonl.mkdir(parents=True, exist_ok=True)
    files = {}
    for split in ("train", "test"):
        rows = _imdb_rows(split, limit)
        dst = out_jsonl / f"{split}.jsonl"
        with open(dst, "w", encoding="utf-8") as g:
            for r in rows:
                g.write(json.dumps(r, ensure_ascii=False) + "\n")
        files[split] = dst
        for r in rows:
            d = out_folder / split / ("pos" if r["label"] == 1 else "neg")
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{r['id']}_{r['rating']}.txt").write_text(r["text"], encoding="utf-8")
    return files, out_folder


def tfidf_baseline(train, test, seed: int = 0) -> dict | None:
    """Test accuracy of TF-IDF (1-2 grams) + logistic regression, or None without
    scikit-learn."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        return None
    t0 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    X = vec.fit_transform(train.texts)
    clf = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
    clf.fit(X, train.labels)
    acc = float((clf.predict(vec.transform(test.texts)) == test.labels).mean())
    return {"test_accuracy": acc, "train": len(train), "test": len(test),
            "features": int(X.shape[1]), "seconds": round(time.perf_counter() - t0, 1)}


def commands(name: str, args: str, max_len: int = 0) -> dict:
    """The README row's two runs: the defaults from scratch, and MiniLM fine-tuned
    with the defaults it chooses for a pretrained BERT (numformer.train.auto;
    ``max_len``, when given, caps the length: IMDb's reviews at 512 WordPiece
    tokens cost about an hour an epoch on one core)."""
    run = f"runs/{name}"
    cap = f" --max-len {max_len}" if max_len else ""
    return {"scratch": f"numformer train classify {args} --out {run}",
            "minilm": f"numformer train classify {args} --init minilm{cap} --out {run}-minilm"}


STSB = ("--format tsv --header no --text-column 5 --text-pair-column 6 --label-column 4")


def stsb_commands(root: Path) -> dict:
    d = root / "stsb"
    files = f"--train {d}/sts-train.csv --dev {d}/sts-dev.csv --test {d}/sts-test.csv"
    return {
        "bi-encoder (zero-shot)": "python benchmarks/user_data.py --stsb-zero-shot",
        "cross-encoder (fine-tuned)":
            f"numformer train regress {files} {STSB} --init minilm --max-len 128 --epochs 3 "
            f"--batch-size 16 --lr 5e-5 --warmup 216 --dropout 0.1 --keep-best dev_spearman "
            f"--keep-margin 0 --pair-swap --pooling cls --out runs/stsb-cross",
        "cross-encoder, cosine of each text's tokens (fine-tuned)":
            f"numformer train regress {files} {STSB} --init minilm --pair-encoder cross-cosine "
            f"--pair-swap --max-len 128 --epochs 3 --batch-size 16 --lr 2e-5 --warmup 216 "
            f"--keep-best dev_spearman --keep-margin 0 --out runs/stsb-cc",
        "bi-encoder (fine-tuned)":
            f"numformer train regress {files} {STSB} --init minilm --pair-encoder bi "
            f"--max-len 128 --epochs 4 --batch-size 16 --lr 2e-5 --warmup 144 "
            f"--keep-best dev_spearman --keep-margin 0 --out runs/stsb-bi",
    }


def _stsb(split: str):
    """STS-B dev or test as numformer reads it (tab-separated, ragged rows included)."""
    from numformer.data.user_data import load_labelled
    files = {s: DATA / "stsb" / f"sts-{s}.csv" for s in ("train", "dev", "test")}
    _, evals, _, _ = load_labelled(files["train"], dev=files["dev"], test=files["test"],
                                   kind="regress", fmt="tsv", header="no", text_column="5",
                                   pair_column="6", label_column="4")
    return evals[split]


def stsb_cosines(split: str, limit: int = 0):
    """all-MiniLM-L6-v2 as a bi-encoder: the cosine of the two sentences' embeddings."""
    from numformer.pretrained import load_bert
    from numformer.pretrained.sentence import cosine_similarity, sentence_embeddings
    d = _stsb(split)
    n = limit or len(d)
    model, tok = load_bert()
    cos = cosine_similarity(sentence_embeddings(model, tok, d.texts[:n]),
                            sentence_embeddings(model, tok, d.pairs[:n]))
    return cos, d.labels[:n]


def stsb_zero_shot(limit: int = 0) -> dict:
    """The zero-shot bi-encoder's Spearman and Pearson on STS-B dev and test."""
    from numformer.train.metrics import pearson, spearman
    out = {}
    for split in ("dev", "test"):
        t0 = time.perf_counter()
        cos, y = stsb_cosines(split, limit)
        out[split] = {"pairs": len(y), "spearman": spearman(cos, y), "pearson": pearson(cos, y),
                      "seconds": round(time.perf_counter() - t0, 1)}
    return out


def _ranks(v):
    """Each value's rank among v, in [0, 1] (float scores: ties are not expected)."""
    import numpy as np
    return np.argsort(np.argsort(v, kind="stable"), kind="stable") / max(1, len(v) - 1)


def stsb_combined(run: str) -> dict:
    """A fine-tuned cross-encoder run and the zero-shot bi-encoder together: the mean
    of each one's rank of a pair among the split's pairs (equal weights, fixed in
    advance; no weight is fitted), scored on dev and test beside each one alone."""
    from numformer.commands.predict_file import predict_arrays
    from numformer.train.load import load_trained
    from numformer.train.metrics import pearson, spearman
    trained = load_trained(run)
    out = {"run": run}
    for split in ("dev", "test"):
        d = _stsb(split)
        cross = predict_arrays(trained, d.texts, d.pairs)  # (N,) scores
        cos, y = stsb_cosines(split)
        both = 0.5 * (_ranks(cross) + _ranks(cos))
        out[split] = {name: {"spearman": spearman(v, y), "pearson": pearson(v, y)}
                      for name, v in (("cross_encoder", cross), ("bi_encoder", cos),
                                      ("rank_mean", both))}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="folder for the written data (default: a new temporary one)")
    p.add_argument("--imdb-limit", type=int, default=0,
                   help="write only N reviews of each IMDb split, half of each class (0 = all)")
    p.add_argument("--stsb-zero-shot", action="store_true",
                   help="run the zero-shot bi-encoder on STS-B dev and test")
    p.add_argument("--stsb-combine", metavar="RUN",
                   help="score a fine-tuned STS-B cross-encoder run, the zero-shot bi-encoder "
                        "and the mean of their ranks on dev and test")
    p.add_argument("--no-baseline", action="store_true", help="skip the TF-IDF baselines")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if not DATA.is_dir():
        print(f"no data at {DATA} (set NUMFORMER_DATA)", file=sys.stderr)
        return 2
    from numformer.data.user_data import load_labelled
    root = Path(args.out or tempfile.mkdtemp(prefix="numformer-user-data-"))
    print(f"data written under {root}")
    sst = write_sst2_csv(root / "sst2")
    imdb, folder = write_imdb(root / "imdb_jsonl", root / "imdb_folder", args.imdb_limit)
    rows = {
        "sst2-csv": (dict(train=sst["train"], dev=sst["dev"], test=sst["test"]),
                     f"--train {sst['train']} --dev {sst['dev']} --test {sst['test']}", 0),
        "imdb-jsonl": (dict(train=imdb["train"], test=imdb["test"]),
                       f"--train {imdb['train']} --test {imdb['test']}", 256),
        "imdb-folder": (dict(train=folder), f"--data {folder}", 256),
    }
    results = {"data": str(root), "rows": {}, "stsb": {"commands": stsb_commands(DATA)}}
    for name, (files, flags, max_len) in rows.items():
        train, evals, names, report = load_labelled(**files)  # numformer's own split
        row = {"files": {k: str(v) for k, v in files.items()}, "classes": names,
               "split": {"train": len(train), **{k: len(v) for k, v in evals.items()}},
               "commands": commands(name, flags, max_len)}
        if not args.no_baseline:
            base = tfidf_baseline(train, evals["test"])
            row["tfidf_logreg"] = base if base else "skipped: scikit-learn is not installed"
        results["rows"][name] = row
        print(f"\n{name}: {row['split']} classes {names}")
        for line in report:
            print(f"  {line}")
        if "tfidf_logreg" in row:
            b = row["tfidf_logreg"]
            print("  TF-IDF (1-2 grams) + logistic regression: " +
                  (f"test accuracy {b['test_accuracy']:.4f} ({b['features']} features, "
                   f"{b['seconds']} s)" if isinstance(b, dict) else b))
        for k, c in row["commands"].items():
            print(f"  {k}: {c}")
    print("\nSTS-B (tab-separated, ragged rows included):")
    for k, c in results["stsb"]["commands"].items():
        print(f"  {k}: {c}")
    if args.stsb_zero_shot:
        results["stsb"]["zero_shot"] = zs = stsb_zero_shot()
        for split, z in zs.items():
            print(f"  zero-shot bi-encoder on {split} ({z['pairs']} pairs): Spearman "
                  f"{z['spearman']:.4f}, Pearson {z['pearson']:.4f} ({z['seconds']} s)")
    if args.stsb_combine:
        results["stsb"]["combined"] = c = stsb_combined(args.stsb_combine)
        for split in ("dev", "test"):
            print(f"  {split}: " + "; ".join(f"{k} Spearman {v['spearman']:.4f}, Pearson "
                                             f"{v['pearson']:.4f}" for k, v in c[split].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
