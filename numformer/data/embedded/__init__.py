"""Small datasets shipped inside the package (no network, no data folder needed).

    europarl_fr()       the first 3,000 French Europarl v7 lines (masked-LM default)
    sst2(split)         SST-2 "train" (6,920), "dev" (872), "test" (1,821), labels 0/1
    tinyshakespeare()   1,115,394 characters (character-level LM default)
    attribution()       sources and licences (ATTRIBUTION.txt)

The files are gzip-compressed copies read by the same loaders as any user
file (``numformer.data.datasets``), through importlib.resources, so they
work from an installed wheel.
"""

from __future__ import annotations

from importlib import resources

from numformer.data.datasets import (LabelledTexts, load_europarl, load_sst2,
                                     load_tinyshakespeare)

FILES = {
    "europarl_fr": "europarl-v7.fr-en.fr.head2999.gz",
    "sst2.train": "stsa.binary.train.gz",
    "sst2.dev": "stsa.binary.dev.gz",
    "sst2.test": "stsa.binary.test.gz",
    "tinyshakespeare": "tinyshakespeare.txt.gz",
}
ATTRIBUTION = "ATTRIBUTION.txt"


def _read(filename: str, loader, *args, **kw):
    with resources.as_file(resources.files(__name__) / filename) as path:
        return loader(path, *args, **kw)


def europarl_fr(skip_empty: bool = False) -> list[str]:
    """The first 3,000 lines of Europarl v7 French (6 of them empty, dropped with
    ``skip_empty``)."""
    return _read(FILES["europarl_fr"], load_europarl, skip_empty=skip_empty)


def sst2(split: str = "train") -> LabelledTexts:
    """SST-2 ``split`` ("train", "dev" or "test")."""
    key = f"sst2.{split}"
    if key not in FILES:
        raise ValueError(f"split: expected 'train', 'dev' or 'test', got {split!r}")
    return _read(FILES[key], load_sst2, split)


def tinyshakespeare() -> str:
    """The tinyshakespeare text."""
    return _read(FILES["tinyshakespeare"], load_tinyshakespeare)


def attribution() -> str:
    """Where each embedded file comes from and under which terms."""
    return (resources.files(__name__) / ATTRIBUTION).read_text(encoding="utf-8")
