"""The official aclImdb layout, from a tiny fake archive built here (no network):
read in place, from an extracted tree, and through download_imdb with a file:// URL."""

import io
import tarfile

import numpy as np
import pytest

from numformer.data import DataError, download_imdb, load_imdb
from numformer.data.imdb import read_imdb_archive

REVIEWS = {  # member name -> text
    "aclImdb/train/pos/3_9.txt": "Loved it.<br /><br />Would watch again.",
    "aclImdb/train/pos/1_7.txt": "Pretty good.",
    "aclImdb/train/neg/0_2.txt": "Boring.",
    "aclImdb/train/neg/2_4.txt": "Not great, not terrible... mostly not great.",
    "aclImdb/train/unsup/0_0.txt": "Watched it on a plane.",
    "aclImdb/train/unsup/1_0.txt": "Ça m'a plu — vraiment.",
    "aclImdb/test/pos/0_10.txt": "A masterpiece.",
    "aclImdb/test/neg/5_1.txt": "Dreadful.",
}
EXTRA = {  # files of the real archive that are not reviews
    "aclImdb/README": "Large Movie Review Dataset v1.0",
    "aclImdb/imdb.vocab": "the\nand\n",
    "aclImdb/train/urls_pos.txt": "http://www.imdb.com/title/tt0453418/usercomments\n",
    "aclImdb/train/labeledBow.feat": "9 0:9 1:1\n",
}


def make_archive(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode("utf-8") if isinstance(text, str) else text
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def archive(tmp_path):
    return make_archive(tmp_path / "aclImdb_v1.tar.gz", {**EXTRA, **REVIEWS})


def test_archive_splits(archive):
    train = load_imdb(archive, "train")
    # neg before pos, then by id
    assert train.texts == ["Boring.", "Not great, not terrible... mostly not great.",
                           "Pretty good.", "Loved it.  Would watch again."]
    assert train.labels.tolist() == [0, 0, 1, 1]
    assert train.extra["rating"].tolist() == [2, 4, 7, 9]
    assert train.extra["id"].tolist() == [0, 2, 1, 3]
    test = load_imdb(archive, "test")
    assert test.texts == ["Dreadful.", "A masterpiece."] and test.labels.tolist() == [0, 1]
    unsup = load_imdb(archive, "unsup")
    assert unsup.texts == ["Watched it on a plane.", "Ça m'a plu — vraiment."]
    assert unsup.labels.tolist() == [-1, -1] and unsup.extra["rating"].tolist() == [0, 0]
    raw = load_imdb(archive.parent, "train", clean=False)  # the directory holding the archive
    assert raw.texts[3] == REVIEWS["aclImdb/train/pos/3_9.txt"]


def test_extracted_tree_reads_the_same(archive, tmp_path):
    out = tmp_path / "extracted"
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    for split in ("train", "test", "unsup"):
        a = load_imdb(archive, split)
        for root in (out, out / "aclImdb"):
            b = load_imdb(root, split)
            assert b.texts == a.texts
            np.testing.assert_array_equal(b.labels, a.labels)
            np.testing.assert_array_equal(b.extra["rating"], a.extra["rating"])


def test_download_through_a_file_url(archive, tmp_path):
    dest = download_imdb(tmp_path / "dl", url=archive.as_uri())
    assert dest.name == "aclImdb_v1.tar.gz" and dest.read_bytes() == archive.read_bytes()
    assert len(load_imdb(tmp_path / "dl", "train")) == 4
    assert not list((tmp_path / "dl").glob("*.part"))
    with pytest.raises(ConnectionError, match="could not download"):
        download_imdb(tmp_path / "dl2", url=(tmp_path / "missing.tar.gz").as_uri())
    assert not list((tmp_path / "dl2").glob("*"))


def test_archive_errors(tmp_path):
    bad_rating = make_archive(tmp_path / "a.tar.gz", {"aclImdb/train/pos/1_3.txt": "meh"})
    with pytest.raises(DataError, match=r"a\.tar\.gz:aclImdb/train/pos/1_3\.txt: rating 3 out "
                                        r"of range \[7, 10\] for a pos review"):
        load_imdb(bad_rating, "train")
    latin1 = make_archive(tmp_path / "b.tar.gz", {"aclImdb/test/neg/1_1.txt": b"ok\nbad \xe9\n"})
    with pytest.raises(DataError, match=r"b\.tar\.gz:aclImdb/test/neg/1_1\.txt, line 2: not "
                                        r"valid UTF-8"):
        load_imdb(latin1, "test")
    no_test = make_archive(tmp_path / "c.tar.gz", {"aclImdb/train/neg/1_1.txt": "x"})
    with pytest.raises(DataError, match=r"c\.tar\.gz: no aclImdb/.* review of the test split"):
        read_imdb_archive(no_test, "test")
    junk = tmp_path / "d.tar.gz"
    junk.write_bytes(b"this is not a tar file at all" * 10)
    with pytest.raises(DataError, match=r"d\.tar\.gz: not a readable tar archive"):
        load_imdb(junk)
    with pytest.raises(FileNotFoundError, match="download_missing"):
        load_imdb(tmp_path / "empty_dir_that_does_not_exist")


def test_sst_download_missing_through_a_file_url(tmp_path):
    from numformer.data import download_sst, load_sst2, load_sst5
    server = tmp_path / "server"
    server.mkdir()
    (server / "stsa.binary.dev").write_text("1 good .\n0 bad .\n", encoding="utf-8")
    (server / "stsa.fine.test").write_text("4 great .\n", encoding="utf-8")
    url = server.as_uri() + "/{name}"
    dest = tmp_path / "sst"
    d = load_sst2(dest, "dev", download_missing=True, url=url)
    assert d.texts == ["good .", "bad ."] and (dest / "stsa.binary.dev").is_file()
    assert download_sst(dest, fine=True, splits=("test",), url=url) == [dest / "stsa.fine.test"]
    assert load_sst5(dest, "test").labels.tolist() == [4]
    with pytest.raises(ConnectionError, match="stsa.binary.train"):
        load_sst2(dest, "train", download_missing=True, url=url)


def test_by_rating_labels_are_star_classes(archive):
    from numformer.data import by_rating
    train = load_imdb(archive, "train")
    r = by_rating(train)
    assert r.n_classes == 8 and r.texts is train.texts
    # ratings 2, 4, 7, 9 -> classes 1, 3, 4, 6 (RATINGS = 1, 2, 3, 4, 7, 8, 9, 10)
    assert r.labels.tolist() == [1, 3, 4, 6]
    assert by_rating(load_imdb(archive, "test")).labels.tolist() == [0, 7]  # 1/10 then 10/10
    with pytest.raises(ValueError, match=r"review 0 has rating 0, expected one of \(1, 2, 3, 4, 7"):
        by_rating(load_imdb(archive, "unsup"))
