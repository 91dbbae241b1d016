"""Checkpoints: one ``.npz`` file, written atomically, loaded without pickle.

Layout of the archive (every entry a plain array):
    meta                 uint8 bytes of a UTF-8 JSON document: format version,
                         kind, model config, train config, step, epoch, RNG
                         states, metrics, vocabulary file name, anything else
    model/<name>         each Parameter's value
    optim/<key>          the optimizer's (flat) state_dict arrays; its plain
                         numbers go in meta

Writing goes to a temporary file in the same folder (``<name>.<random>.tmp``),
flushed and fsynced, then renamed over the target, so a crash or a full disk
leaves the previous checkpoint whole; a process killed mid-write leaves that
temporary behind, which ``temporaries`` finds (a new run in the folder removes
them). A checkpoint holding a NaN or infinite value is never written
(``NonFiniteError`` names the tensor). Loading uses ``np.load(allow_pickle=False)``; a truncated,
corrupt or foreign file raises ``CheckpointError`` naming the file.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT = "numformer-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read as a numformer checkpoint."""


class NonFiniteError(ValueError):
    """save_checkpoint was given a tensor holding NaN or inf: nothing was written."""


def nonfinite_tensors(arrays: dict) -> list[tuple[str, int, int]]:
    """``(name, count, size)`` of every float array holding NaN or inf."""
    out = []
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind in "fc":
            bad = a.size - int(np.count_nonzero(np.isfinite(a)))
            if bad:
                out.append((name, bad, a.size))
    return out


# tempfile.mkstemp's names: prefix, 8 characters of [a-z0-9_], suffix
_TMP_MIDDLE = re.compile(r"[a-z0-9_]+")


def temporaries(folder, name: str) -> list[Path]:
    """The temporary files a killed ``save_checkpoint(folder / name)`` left in
    ``folder`` (only names of the form ``<name>.<mkstemp's random part>.tmp``)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    prefix, suffix = name + ".", ".tmp"
    return sorted(p for p in folder.iterdir()
                  if p.name.startswith(prefix) and p.name.endswith(suffix)
                  and _TMP_MIDDLE.fullmatch(p.name[len(prefix):-len(suffix)]) and p.is_file())


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def save_checkpoint(path, model_state: dict, meta: dict, optim_state: dict | None = None) -> Path:
    """Write a checkpoint atomically; returns the final path.

    Raises NonFiniteError, naming the first tensor (``model/<name>`` or
    ``optim/<key>``) that holds NaN or inf, before anything is written: the
    file already at ``path`` is left as it was.
    """
    path = Path(path)
    arrays = {f"model/{k}": np.asarray(v) for k, v in model_state.items()}
    if optim_state is not None:  # a flat dict of arrays and plain numbers
        arrays.update({f"optim/{k}": v for k, v in optim_state.items()
                       if isinstance(v, np.ndarray)})
    bad = nonfinite_tensors(arrays)
    if bad:
        name, n, size = bad[0]
        more = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
        raise NonFiniteError(f"checkpoint {path}: not written: {name} holds {n} non-finite "
                             f"values (NaN or inf) of {size}{more}; the file on disk is left "
                             f"as it was")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(_jsonable(meta))
    if optim_state is not None:
        meta["optim_scalars"] = {k: _jsonable(v) for k, v in optim_state.items()
                                 if not isinstance(v, np.ndarray)}
    meta["format"], meta["version"] = FORMAT, VERSION
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def load_checkpoint(path) -> dict:
    """Read a checkpoint: ``{"meta": dict, "model": {name: array}, "optim": dict | None}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    with open(path, "rb") as f:  # np.load would read a .npy or try a pickle
        if f.read(4) != b"PK\x03\x04":
            raise CheckpointError(f"checkpoint {path}: corrupt or not a numformer checkpoint "
                                  f"(not the .npz archive 'numformer train' writes)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path}: corrupt or not a numformer checkpoint "
                              f"({type(e).__name__}: {e})") from None
    if "meta" not in arrays:
        raise CheckpointError(f"checkpoint {path}: no 'meta' entry; not a numformer checkpoint")
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path}: unreadable metadata ({e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: expected format {FORMAT!r}, "
                              f"got {meta.get('format')!r}")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path}: expected version {VERSION}, "
                              f"got {meta.get('version')}")
    model = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    optim = None
    if "optim_scalars" in meta:
        optim = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
        optim.update(meta.pop("optim_scalars"))
    return {"meta": meta, "model": model, "optim": optim}
