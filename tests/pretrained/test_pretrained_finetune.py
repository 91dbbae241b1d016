"""Fine-tuning a (tiny, random) BERT checkpoint with `numformer train classify --init`."""

import json

import numpy as np
import pytest

from numformer.cli import main
from numformer.train import TrainConfig, train
from numformer.train.load import load_trained

pytest.importorskip("safetensors", reason="pip install safetensors (the pretrained extra)")

WORDS = ["the", "sat", "on", "mat", "a", ".", "runs"]


@pytest.fixture
def sst_dir(tmp_path):
    """Sentences of 2-7 words of the tiny vocabulary; label 1 when 'cat' is in them
    and 0 when 'dog' is (lengths carry no information about the label)."""
    rng = np.random.default_rng(0)
    d = tmp_path / "sst"
    d.mkdir()
    for split, n in (("train", 96), ("dev", 24), ("test", 24)):
        lines = []
        for _ in range(n):
            words = list(rng.choice(WORDS, rng.integers(1, 6)))
            y = int(rng.integers(0, 2))
            words.insert(int(rng.integers(0, len(words) + 1)), "cat" if y else "dog")
            lines.append(f"{y} {' '.join(words)}")
        (d / f"stsa.binary.{split}").write_text("\n".join(lines) + "\n")
    return d


def test_finetune_trains_saves_and_reloads(tiny_bert_dir, sst_dir, tmp_path, capsys):
    # 16 epochs: with 4, whether the random tiny BERT had learned the task depended on the
    # dropout masks (seeds 0-5: 1 of 6 passed); with 16 all six reach test accuracy 1.0
    cfg = TrainConfig(task="classify", dataset="sst2", data=str(sst_dir), init=str(tiny_bert_dir),
                      max_len=10, epochs=16, batch_size=8, lr=1e-2, warmup=2, dropout=0.0,
                      out=str(tmp_path / "ft"), progress=False, weight_decay=0.0)
    summary = train(cfg, log=lambda *a: None)
    losses = json.load(open(summary["files"]["history"]))["train_loss"]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.2, losses
    assert summary["metrics"]["test_accuracy"] >= 0.9
    trained = load_trained(tmp_path / "ft")
    assert type(trained.model).__name__ == "BertClassifier"
    assert trained.tokenizer.encode("the cat") == [2, 5, 6, 3]  # [CLS] the cat [SEP]
    assert main(["eval", str(tmp_path / "ft")]) == 0
    out = capsys.readouterr().out
    metrics = json.loads(out[:out.index("}") + 1])
    assert metrics["test_accuracy"] == pytest.approx(summary["metrics"]["test_accuracy"])
    assert main(["predict", "-c", str(tmp_path / "ft"), "the cat sat ."]) == 0
    assert capsys.readouterr().out.split()[0] in ("negative", "positive")
