"""The data shipped inside the package: present, small, attributed, identical to the
shared copies (compared where the shared folder exists)."""

from importlib import resources

import numpy as np
import pytest

from numformer.data import embedded, load_europarl, load_sst2, load_tinyshakespeare


def test_embedded_loads_without_the_shared_folder():
    fr = embedded.europarl_fr()
    assert len(fr) == 3_000 and fr[0] == "Reprise de la session"
    assert len(embedded.europarl_fr(skip_empty=True)) == 2_994
    for split, n in (("train", 6_920), ("dev", 872), ("test", 1_821)):
        d = embedded.sst2(split)
        assert len(d) == n and set(d.labels.tolist()) == {0, 1}
    text = embedded.tinyshakespeare()
    assert len(text) == 1_115_394 and text.startswith("First Citizen:")
    with pytest.raises(ValueError, match="split"):
        embedded.sst2("validation")


def test_embedded_files_are_small_gzip_and_attributed():
    root = resources.files(embedded)
    total = 0
    for name in embedded.FILES.values():
        data = (root / name).read_bytes()
        assert data[:2] == b"\x1f\x8b", name
        total += len(data)
    assert total < 3 * 2**20, f"embedded data is {total / 2**20:.2f} MiB"
    text = embedded.attribution()
    for name in embedded.FILES.values():
        assert name in text
    for source in ("Koehn", "Socher", "public domain"):
        assert source in text


def test_embedded_equals_the_shared_data(data_dir):
    assert embedded.europarl_fr() == load_europarl(data_dir / "europarl", "fr")
    for split in ("train", "dev", "test"):
        a, b = embedded.sst2(split), load_sst2(data_dir / "sst", split)
        assert a.texts == b.texts
        np.testing.assert_array_equal(a.labels, b.labels)
    assert embedded.tinyshakespeare() == load_tinyshakespeare(data_dir / "english_lm")
