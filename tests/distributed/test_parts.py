"""numformer.distributed in one process: dropout masks of a batch's rows, the flat
gradient buffer, cutting batches into parts, gradient accumulation, world detection."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from numformer import distributed as dist
from numformer import kernels, nn
from numformer.data.masking import MLMBatch
from numformer.ops import dropout as R


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_dropout_of_rows_with_an_offset_is_the_whole_batch_mask(backend):
    if backend == "numba" and not kernels.numba_available():
        pytest.skip("numba not installed")
    from numformer.kernels import dropout as K
    op = R if backend == "numpy" else K
    x = np.random.default_rng(0).standard_normal((5, 7, 3)).astype(np.float32)
    _, whole = op.dropout_forward(x, 0.3, np.random.default_rng(9))
    row = x[0].size
    parts = [op.dropout_forward(x[lo:hi], 0.3, np.random.default_rng(9), offset=lo * row)[1]
             for lo, hi in [(0, 2), (2, 3), (3, 5)]]
    got = np.concatenate(parts)
    assert np.array_equal(got, whole), f"{np.argwhere(got != whole)[:5]}"
    # and without the offset the parts draw other masks (the test can fail)
    assert not np.array_equal(op.dropout_forward(x[2:5], 0.3, np.random.default_rng(9))[1],
                              whole[2:5])
    with pytest.raises(ValueError, match="offset: expected an integer >= 0"):
        op.dropout_forward(x, 0.3, np.random.default_rng(9), offset=-1)


def test_dropout_layer_inside_batch_rows_from():
    x = np.random.default_rng(1).standard_normal((6, 4, 5))
    layer = nn.Dropout(0.5, seed=3)
    whole = layer(x)
    layer.rng = np.random.default_rng(3)
    with nn.layers.batch_rows_from(4):
        part = layer(x[4:])
    assert np.array_equal(part, whole[4:])


def _tiny_model():
    cfg = nn.ModelConfig(vocab_size=11, dim=8, n_heads=2, n_layers=1, d_ff=16, max_len=6,
                         dropout=0.0)
    return nn.MaskedLM(cfg, seed=0)


def test_grad_buffer_views_every_trainable_grad_and_skips_frozen_ones():
    model = _tiny_model()
    frozen = model.freeze("body.pos.*")
    assert frozen
    for i, p in enumerate(model.trainable_parameters()):
        p.grad[...] = i + 1.0
    before = [p.grad.copy() for p in model.trainable_parameters()]
    buf = dist.GradBuffer(model.parameters())
    live = model.trainable_parameters()
    assert buf.flat.size == sum(p.size for p in live)
    assert all(np.shares_memory(p.grad, buf.flat) for p in live)
    assert all(np.array_equal(p.grad, b) for p, b in zip(live, before))
    assert all(p.grad is None for n, p in model.named_parameters() if n in frozen)
    buf.flat[:] = 0.0  # one write reaches every gradient
    assert all(not p.grad.any() for p in live)
    model.astype(np.float64)  # grads replaced: bind() re-points
    buf.bind()
    assert buf.flat.dtype == np.float64 and all(np.shares_memory(p.grad, buf.flat) for p in live)


def _mlm_batch(B=4, T=5, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 11, (B, T))
    km = np.ones((B, T), bool)
    km[1, 3:] = False
    from numformer.data.masking import mask_tokens
    return mask_tokens(ids, km, rng, vocab_size=11, prob=0.4)


def test_shard_rows_of_a_masked_batch_renumbers_positions():
    b = _mlm_batch()
    parts = [dist.shard_rows(b, lo, hi) for lo, hi in dist.shard_bounds(4, 3)]
    assert [p.ids.shape[0] for p in parts] == [1, 1, 2]
    assert np.array_equal(np.concatenate([p.targets for p in parts]), b.targets)
    for (lo, hi), p in zip(dist.shard_bounds(4, 3), parts):
        assert isinstance(p, MLMBatch)
        # the part's positions point at its own rows' copies of the chosen tokens
        assert np.array_equal(p.ids.ravel()[p.positions], b.ids[lo:hi].ravel()[p.positions])
        assert np.array_equal(p.positions + lo * b.ids.shape[1],
                              b.positions[(b.positions >= lo * 5) & (b.positions < hi * 5)])


def test_loss_count_and_tuple_shards():
    class Task:
        loss = nn.CrossEntropyLoss(ignore_index=-1)
    y = np.array([[1, -1, 2], [3, 4, -1]])
    x = np.zeros((2, 3), np.int64)
    assert dist.loss_count(Task(), (x, y)) == 4
    assert dist.loss_count(Task(), dist.shard_rows((x, y), 1, 2)) == 2
    assert dist.loss_count(object(), _mlm_batch()) == len(_mlm_batch().targets)
    assert dist.shard_bounds(5, 2) == [(0, 2), (2, 5)]
    assert dist.shard_bounds(1, 2) == [(0, 0), (0, 1)]


def _mlm_task(tmp_path, dropout=0.2):
    from numformer.train import TrainConfig
    from numformer.train.tasks import make_task
    cfg = TrainConfig(task="mlm", limit=120, dim=16, n_heads=2, n_layers=1, d_ff=32,
                      max_len=12, batch_size=7, dropout=dropout, out=str(tmp_path))
    task = make_task(cfg, log=lambda *a: None)
    task.model.astype(np.float64)
    return task


def test_accumulated_micro_batches_give_the_whole_batch_gradient(tmp_path):
    """grad_accum 3 (rows 2, 2, 3 of 7) against the whole batch, with dropout: the same
    loss and gradients (float64), so the parts' weights and dropout masks are right."""
    task = _mlm_task(tmp_path)
    model = task.model
    batch = task.train_batches(0)[0]
    results = []
    for k in (1, 3):
        dp = dist.DataParallel(model, grad_accum=k, w=dist.World())
        model.zero_grad()
        model.seed((0, 5))
        loss, tokens = dp.loss_and_backward(task, batch, reseed=lambda: model.seed((0, 5)))
        results.append((loss, tokens, [p.grad.copy() for p in model.parameters()]))
    (l1, t1, g1), (l3, t3, g3) = results
    assert t1 == t3 == int(batch.key_mask.sum())
    assert abs(l1 - l3) <= 1e-12 * abs(l1)
    for (name, _), a, b in zip(model.named_parameters(), g1, g3):
        err = np.abs(a - b).max() / max(np.abs(a).max(), 1e-300)
        assert err <= 1e-12, f"{name}: relative gradient difference {err:.3g}"
    # a plain mean of the micro-batches' means is not the batch mean (the counts differ)
    counts = [dist.loss_count(task, dist.shard_rows(batch, lo, hi))
              for lo, hi in dist.shard_bounds(7, 3)]
    assert len(set(counts)) > 1, counts


def test_data_parallel_refuses_a_task_without_weight_and_bad_grad_accum(tmp_path):
    task = _mlm_task(tmp_path, dropout=0.0)

    class Old:
        model = task.model
        loss = task.loss

        def loss_and_backward(self, b):
            return task.loss_and_backward(b)
    dp = dist.DataParallel(task.model, grad_accum=2, w=dist.World())
    with pytest.raises(TypeError, match="expected a ``weight`` argument"):
        dp.loss_and_backward(Old(), task.train_batches(0)[0])
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="grad_accum: expected an integer >= 1"):
            dist.DataParallel(task.model, grad_accum=bad)


def test_world_detection(monkeypatch):
    for v in dist.SIZE_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.delenv("NUMFORMER_MPI", raising=False)
    w = dist._detect()
    assert (w.rank, w.size, w.is_root, w.comm) == (0, 1, True, None)
    buf = np.arange(3.0)
    assert w.allreduce_(buf) is buf and np.array_equal(buf, [0, 1, 2])
    monkeypatch.setenv("PMI_SIZE", "4")
    monkeypatch.setenv("NUMFORMER_MPI", "0")
    assert dist._detect().size == 1  # forced off
    monkeypatch.delenv("NUMFORMER_MPI")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # as if not installed
    with pytest.raises(RuntimeError, match=r"one of 4 MPI ranks .*pip install 'numformer\[mpi\]'"):
        dist._detect()


def test_zero_settings_are_checked():
    from numformer import optim
    from numformer.train import TrainConfig
    from numformer.train.settings import ConfigError
    from numformer.zero import ZeroAdam
    with pytest.raises(ConfigError, match="expected 0 .off. or 1"):
        TrainConfig(zero=2)
    model = _tiny_model()
    with pytest.raises(ValueError, match="zero .--zero.: expected 0 .off. or 1"):
        dist.DataParallel(model, zero=3)
    with pytest.raises(ValueError, match="ZeRO stage 1 shards Adam and AdamW moments; got SGD"):
        ZeroAdam(optim.SGD(model, lr=0.1), model, dist.World())
    # one rank: nothing to shard, the optimizer is the plain one
    opt = optim.AdamW(model)
    assert dist.DataParallel(model, zero=1, w=dist.World()).optimizer(opt) is opt
