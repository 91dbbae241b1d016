"""The notebooks under notebooks/ run top to bottom, their gradient checks
pass, each draws at least one picture, and they are committed without outputs.

Each notebook runs in a fresh ``python3`` kernel (ipykernel, started by
nbclient with this interpreter), its working directory notebooks/.
matplotlib draws with the inline backend: PNGs rendered by Agg, no display
needed, and they land in the cell outputs where this test can count them.
The last code cell of every notebook runs ``numformer.gradcheck`` and prints
its table (rows ending in ``ok`` or ``FAIL``) before asserting the report;
the test reads that table from the outputs as well.

A notebook may name modules it needs in its metadata
(``{"numformer": {"requires": ["numformer.kernels.attention"]}}``, the
kernels notebook); where one of them is absent it is skipped, with the
reason, instead of failing on an import.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
FAMILIES = ["dense", "softmax", "layernorm", "attention", "embedding", "encoder_block", "modern"]
CELL_TIMEOUT_S = 120  # a hang guard, not a speed requirement
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def _ids(path: Path) -> str:
    return path.stem


def _missing_requirements(nb) -> list[str]:
    required = nb.metadata.get("numformer", {}).get("requires", [])
    return [name for name in required if importlib.util.find_spec(name) is None]


def _text_outputs(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_one_notebook_per_op_family():
    names = [p.stem for p in NOTEBOOKS]
    missing = [f for f in FAMILIES if not any(f in n for n in names)]
    assert not missing, f"no notebook for {missing} in {NB_DIR} (found {names})"


def test_index_lists_every_notebook():
    index = (NB_DIR / "README.md").read_text(encoding="utf-8")
    unlisted = [p.name for p in NOTEBOOKS if p.name not in index]
    assert not unlisted, f"notebooks/README.md does not list {unlisted}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} carry outputs or execution counts; "
                       f"clear them before committing (see notebooks/README.md)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_runs_and_its_gradcheck_is_ok(path):
    nb = nbformat.read(path, as_version=4)
    missing = _missing_requirements(nb)
    if missing:
        pytest.skip(f"{path.name} needs {missing}, which cannot be imported here")
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(NB_DIR)}})
    # raises CellExecutionError, with the failing cell and its traceback, if any cell raises
    client.execute(env=dict(os.environ, MPLBACKEND=INLINE_BACKEND))

    code = [c for c in nb.cells if c.cell_type == "code"]
    last = _text_outputs(code[-1])
    assert "norm rel" in last, (f"{path.name}: the last cell printed no gradcheck table; "
                                f"it printed:\n{last}")
    rows = [line for line in last.splitlines() if re.search(r"\s(ok|FAIL)$", line)]
    failed = [line for line in rows if line.endswith("FAIL")]
    assert rows and not failed, f"{path.name}: gradient check rows failed:\n" + "\n".join(failed)

    pictures = sum(1 for c in code for out in c.get("outputs", [])
                   if out.output_type == "display_data" and "image/png" in out.get("data", {}))
    assert pictures >= 1, f"{path.name}: drew no picture"
