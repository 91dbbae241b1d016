"""Metrics, projector files, nearest neighbours and plots."""

import math

import numpy as np
import pytest

from numformer.train import metrics, outputs


def test_confusion_matrix_and_accuracies():
    y = np.array([0, 0, 1, 2, 2, 2])
    p = np.array([0, 1, 1, 2, 0, 2])
    cm = metrics.confusion_matrix(y, p, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert metrics.accuracy_from_confusion(cm) == pytest.approx(4 / 6)
    np.testing.assert_allclose(metrics.per_class_accuracy(cm), [0.5, 1.0, 2 / 3])
    assert np.isnan(metrics.per_class_accuracy(metrics.confusion_matrix([0], [0], 2))[1])
    text = metrics.format_confusion(cm, ["neg", "neu", "pos"])
    assert "predicted" in text and text.splitlines()[3].split() == ["pos", "1", "0", "2"]
    with pytest.raises(ValueError, match=r"y_pred: expected classes in \[0, 3\), got 3"):
        metrics.confusion_matrix([0], [3], 3)


def test_perplexity_and_bits():
    assert metrics.perplexity(math.log(7.0)) == pytest.approx(7.0)
    assert metrics.bits(math.log(2.0) * 1.5) == pytest.approx(1.5)
    assert metrics.perplexity(1e6) == float("inf")


def test_projector_files(tmp_path, rng):
    E = rng.standard_normal((4, 3))
    words = ["<pad>", "le", "la", "tab\tword"]
    vec, meta = outputs.save_projector(E, words, tmp_path)
    back = np.loadtxt(vec, delimiter="\t")
    np.testing.assert_allclose(back, E, rtol=1e-5)
    assert meta.read_text(encoding="utf-8").splitlines() == ["<pad>", "le", "la", "tab word"]
    with pytest.raises(ValueError, match="words: expected 4"):
        outputs.save_projector(E, words[:3], tmp_path)


def test_nearest_neighbors_by_cosine():
    E = np.array([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.0], [0.0, 5.0], [10.0, 1.5]])
    words = ["a", "b", "c", "d", "e"]
    nn = outputs.nearest_neighbors(E, words, "a", k=3)
    assert [w for w, _ in nn] == ["b", "e", "d"]  # cosine ignores the length of e
    assert nn[0][1] == pytest.approx(0.9 / math.hypot(0.9, 0.1))
    assert [w for w, _ in outputs.nearest_neighbors(E, words, "a", k=2, exclude=["b"])] == ["e", "d"]
    with pytest.raises(KeyError, match="'zz' is not in the vocabulary"):
        outputs.nearest_neighbors(E, words, "zz")


def test_plots_write_png(tmp_path, rng):
    pytest.importorskip("matplotlib")
    hist = {"step": [1, 2, 3], "train_loss": [3.0, 2.0, 1.5], "eval_step": [3],
            "eval_loss": [1.7], "accuracy": [0.4]}
    for path in (outputs.plot_curves(hist, tmp_path / "c.png"),
                 outputs.plot_confusion(np.array([[3, 1], [0, 4]]), ["n", "p"], tmp_path / "m.png"),
                 outputs.plot_attention(rng.dirichlet(np.ones(4), (2, 4)), list("abcd"),
                                        tmp_path / "a.png")):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_standard_errors_match_the_spread_of_simulated_evaluations():
    """The standard error of an accuracy and of Pearson's and Spearman's correlation
    on n examples is the spread of that metric over many simulated dev sets."""
    from numformer.train.metrics import pearson, spearman, standard_error
    rng = np.random.default_rng(0)
    n, reps = 300, 2000
    acc = rng.binomial(n, 0.8, size=reps) / n
    assert standard_error("dev_accuracy", 0.8, n) == pytest.approx(acc.std(), rel=0.06)
    for rho in (0.5, 0.85):
        cov = [[1.0, rho], [rho, 1.0]]
        r, s = [], []
        for _ in range(reps // 2):
            x, y = rng.multivariate_normal([0.0, 0.0], cov, size=n).T
            r.append(pearson(x, y))
            s.append(spearman(x, y))
        assert standard_error("test_pearson", rho, n) == pytest.approx(np.std(r), rel=0.08)
        rho_s = 6 / np.pi * np.arcsin(rho / 2)  # Spearman's rho of a bivariate normal
        assert standard_error("dev_spearman", rho_s, n) == pytest.approx(np.std(s), rel=0.08)
    assert standard_error("dev_loss", 0.3, n) is None
    assert standard_error("dev_accuracy", 0.8, 0) is None
