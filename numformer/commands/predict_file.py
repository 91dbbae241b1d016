"""``numformer predict -c RUN --file FILE``: a classifier's or a regression's
prediction for every row of a CSV, TSV or JSON-lines file, or every ``*.txt``
file of a folder, written as CSV (to ``--output``, else standard output).

The file is read as the run read its training data (the run's --format,
--header, --text-column and --text-pair-column, each overridable here); no
label column is needed, and one that is there is not read. Each output row
starts with where its input came from (``line``: the 1-based line of the
file; ``file``: the path below the folder), then

  classify   prediction (the class name), probability (its probability), then
             one ``p_<class>`` column per class;
  regress    score (in the labels' units).

A run trained with --pair-swap scores each pair in both orders and averages
(the probabilities, or the scores), as its evaluation did."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np

from numformer.commands._common import CommandError

BATCH = 64  # texts a forward pass


def read_inputs(trained, path, fmt=None, header=None, text_column=None, pair_column=None,
                label_column=None, labelled: bool = False, flag: str = "--file"):
    """(ids column name, ids, texts, second texts or None, labels as read or None, what
    was read: one line). ``labelled``: the label column is read too (the run's, or
    ``label_column``); a folder is then one class a sub-folder."""
    from numformer.data.files import DataError
    from numformer.data.tabular import detect_format, read_table
    from numformer.data.user_data import read_folder, read_text_files
    from numformer.commands.predict import _pairs
    tc = trained.train_config
    pairs = _pairs(trained)
    opts = dict(fmt=tc.format if fmt is None else fmt,
                header=tc.header if header is None else header,
                text_column=tc.text_column if text_column is None else text_column,
                pair_column=tc.text_pair_column if pair_column is None else pair_column,
                label_column=tc.label_column if label_column is None else label_column)
    path = Path(path)
    if not path.exists():
        raise CommandError(f"{flag}: no such file or folder: {path}")
    try:
        if detect_format(path, opts["fmt"]) == "folder":
            if pairs:
                raise CommandError(f"{flag} {path}: this run was trained on text pairs; a "
                                   f"folder of text files holds one text a file (give a CSV, "
                                   f"TSV or JSON-lines file with both texts)")
            if labelled:  # one class a sub-folder; each row's "line" is 1
                rows = read_folder(path)
                return "file", rows.lines, rows.texts, None, rows.labels, \
                    f"{path}: {len(rows)} text files; {rows.columns}"
            names, texts = read_text_files(path)
            return "file", names, texts, None, None, f"{path}: {len(texts)} text files"
        rows = read_table(path, opts["fmt"], opts["header"], opts["text_column"],
                          opts["label_column"] if labelled else "",
                          opts["pair_column"] if pairs else "",
                          kind="regress" if trained.meta["task"] == "regress" else "classify",
                          need_label=labelled)
    except DataError as e:
        raise CommandError(str(e)) from None
    if pairs and rows.pairs is None:
        raise CommandError(f"--text-pair-column: this run was trained on text pairs; {path} "
                           f"has no column named as a second text (sentence2, text_b, ...): "
                           f"give it")
    if not pairs:
        rows.pairs = None  # a one-text run reads the first text of a pair file
    notes = "".join(f"; {n}" for n in rows.notes)
    return "line", rows.lines, rows.texts, rows.pairs, rows.labels, \
        f"{path}: {len(rows)} rows; {rows.columns}{notes}"


def raw_outputs(trained, texts, pairs, batch=BATCH) -> np.ndarray:
    """The model's outputs (N, K) float64 for texts (and pairs), in order."""
    from numformer.data.batching import collate
    from numformer.nn.module import no_grad
    from numformer.train.task_base import encode_example, encode_pair
    tok, max_len = trained.tokenizer, trained.train_config.max_len
    if pairs is None:
        seqs = [encode_example(tok, t, max_len, add_cls=True) for t in texts]
        types = None
    else:
        enc = [encode_pair(tok, a, b, max_len) for a, b in zip(texts, pairs)]
        seqs, types = [e[0] for e in enc], [e[1] for e in enc]
    out = np.zeros((len(seqs), 0))
    order = np.argsort([len(s) for s in seqs], kind="stable")  # similar lengths together
    with no_grad():
        for start in range(0, len(order), batch):
            rows = order[start:start + batch]
            ids, km = collate([seqs[j] for j in rows], tok.pad_id)  # (B, T)
            kw = {}
            if types is not None:
                kw["token_type_ids"] = collate([types[j] for j in rows], 0)[0]  # (B, T)
            y = np.asarray(trained.model(ids, km, **kw), dtype=np.float64)  # (B, K)
            if out.shape[1] == 0:
                out = np.zeros((len(seqs), y.shape[1]))
            out[rows] = y
    return out


def predict_arrays(trained, texts, pairs, batch=BATCH) -> np.ndarray:
    """Scores (N,) of a regression run, or class probabilities (N, K); with
    --pair-swap, the mean of both orders'."""
    from numformer.commands.predict import _softmax
    from numformer.train.regress_task import to_score
    regress = trained.meta["task"] == "regress"

    def one(a, b):
        z = raw_outputs(trained, a, b, batch)
        return to_score(z[:, 0], trained.meta) if regress else _softmax(z)
    out = one(texts, pairs)
    if pairs is not None and trained.train_config.pair_swap:
        out = 0.5 * (out + one(pairs, texts))
    return out


def predictions(trained, texts, pairs, batch=BATCH):
    """(header, rows) of the output table, without the ids column."""
    out = predict_arrays(trained, texts, pairs, batch)
    if trained.meta["task"] == "regress":
        return ["score"], [[f"{s:.6g}"] for s in out]
    names = trained.meta.get("class_names") or [str(i) for i in range(out.shape[1])]
    k = out.argmax(-1)
    rows = [[names[j], f"{p[j]:.6f}", *(f"{q:.6f}" for q in p)] for j, p in zip(k, out)]
    return ["prediction", "probability", *(f"p_{n}" for n in names)], rows


def run(args) -> int:
    from numformer.commands._common import check_int, check_output_file, load_or_exit
    from numformer.data.files import write_text_atomic
    check_int("--batch-size", args.batch_size)
    if args.output:
        check_output_file("--output", args.output)
        if Path(args.output).exists() and not args.overwrite:
            raise CommandError(f"--output {args.output}: the file exists; give another path, "
                               f"or --overwrite to replace it")
    trained = load_or_exit(args.checkpoint, expect=("classify", "regress"))
    id_name, ids, texts, pairs, _, what = read_inputs(
        trained, args.file, args.format, args.header, args.text_column, args.text_pair_column)
    print(f"read {what}", file=sys.stderr)
    header, rows = predictions(trained, texts, pairs, args.batch_size)
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([id_name, *header])
    w.writerows([i, *r] for i, r in zip(ids, rows))
    if args.output:
        write_text_atomic(args.output, buf.getvalue())
        print(f"wrote {len(rows)} predictions to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(buf.getvalue())
    return 0
