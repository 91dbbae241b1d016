"""Data parallelism over MPI: the same training run on 1 process or N.

Launched as ``mpiexec -n N numformer train ...`` (or any script calling
``numformer.train.train``), each rank holds a whole model and takes its
share of every global batch:

- ``world()`` finds the MPI world. mpi4py is imported only when a launcher
  says the job has more than one rank (``PMI_SIZE``, ``OMPI_COMM_WORLD_SIZE``,
  ...) or ``NUMFORMER_MPI=1``; without it, or with one rank, ``world()`` is a
  one-rank world and nothing changes (``NUMFORMER_MPI=0`` forces that).
- ``broadcast_parameters``: rank 0's weights go to every rank (one flat
  message) when training starts, so every rank starts from the same point.
- ``GradBuffer``: every trainable Parameter's ``grad`` re-pointed at a view of
  one flat contiguous array (frozen Parameters, ``grad is None``, have no
  place in it), so the gradients of a step are reduced by ONE in-place
  ``Allreduce`` and no copy is made before or after.
- ``DataParallel.loss_and_backward``: a global batch (what one process would
  train on at this step; every rank builds the same one, so padding, MLM
  masks and batch order are the single process's) is cut by rows into
  ``N x K`` contiguous parts; rank r runs the parts ``r*K .. r*K+K-1`` (K =
  ``grad_accum`` micro-batches). The loss of a task is a mean over the
  positions it counts (masked-LM: masked targets; classification: examples;
  LM: tokens), so part j's gradient is weighted by ``n_j / n`` (its count over
  the global batch's count): the upstream gradient of its loss is that
  weight, and the sum over parts and ranks is the single process's mean.
  A plain average of per-rank means would not be, with unequal counts.
- Dropout: before each part the model's generators are reseeded from (seed,
  step), so every part draws the same per-layer key, and the part's rows are
  declared rows ``lo:`` of the batch (``nn.layers.batch_rows_from``), so the
  dropout op hashes the element's index in the whole batch: the N-rank and
  the 1-rank run draw identical masks.
- ``DataParallel.agree``: after every step the ranks agree (one tiny
  Allreduce) on the stop signal (Ctrl-C / SIGTERM seen by any rank) and on
  the training time (the largest), so they stop at the same step on a
  signal or the time limit. A NaN loss or gradient is seen by all at once
  (the loss and the gradients are the reduced ones).
- ``DataParallel.root_only``: rank 0 writes (checkpoints); the others wait
  for its outcome and raise its error too, so a failed write stops all.
- ``guard``: any other error on one rank prints that rank's message and calls
  ``MPI_Abort``, which ends every rank (none waits forever in a collective).

The checkpoint does not depend on N (full weights and optimizer state, the
global step), so a run may resume on another number of ranks.

Across machines: the same command with a hostfile (``mpiexec -f hosts -n 8
numformer train ...``); the data and the run folder must be readable at the
same path on every machine (rank 0 alone writes the run folder).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys

import numpy as np

__all__ = ["World", "world", "GradBuffer", "DataParallel", "broadcast_parameters", "guard",
           "batch_rows", "shard_rows", "loss_count", "shard_bounds", "NoLock"]

# the environment variables by which launchers give the number of ranks
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")


class World:
    """The ranks of a run: ``rank``, ``size``, ``is_root`` and the few collectives
    training needs. ``World()`` is the one-rank world (every collective is the
    identity)."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size})"

    def allreduce_(self, buf: np.ndarray) -> np.ndarray:
        """Sum ``buf`` over the ranks, in place (one message)."""
        if self.size > 1:
            from mpi4py import MPI
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        return buf

    def allmax_(self, buf: np.ndarray) -> np.ndarray:
        if self.size > 1:
            from mpi4py import MPI
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.MAX)
        return buf

    def bcast_(self, buf: np.ndarray) -> np.ndarray:
        """Rank 0's ``buf`` into every rank's, in place."""
        if self.size > 1:
            self.comm.Bcast(buf, root=0)
        return buf

    def bcast_object(self, obj):
        return self.comm.bcast(obj, root=0) if self.size > 1 else obj

    def barrier(self) -> None:
        if self.size > 1:
            self.comm.Barrier()

    def abort(self, message: str, code: int = 1) -> None:
        """Print ``message`` on stderr and end every rank of the job (MPI_Abort)."""
        print(message, file=sys.stderr, flush=True)
        sys.stdout.flush()
        if self.size > 1:
            self.comm.Abort(code)


_WORLD: World | None = None


def launched_size() -> int:
    """The number of ranks a launcher's environment announces (1 when none)."""
    for name in SIZE_VARIABLES:
        v = os.environ.get(name, "")
        if v.strip().isdigit():
            return int(v)
    return 1


def world() -> World:
    """The MPI world of this process (found once; see the module docstring)."""
    global _WORLD
    if _WORLD is None:
        _WORLD = _detect()
    return _WORLD


def _detect() -> World:
    flag = os.environ.get("NUMFORMER_MPI", "").strip()
    if flag == "0":
        return World()
    n = launched_size()
    if n <= 1 and flag != "1":
        return World()
    try:
        from mpi4py import MPI
    except ImportError:
        if n > 1:
            raise RuntimeError(f"this process is one of {n} MPI ranks (a launcher set "
                               f"{[v for v in SIZE_VARIABLES if v in os.environ][0]}), but "
                               f"mpi4py is not installed, so the ranks would train alone and "
                               f"write over each other: pip install 'numformer[mpi]' (mpi4py "
                               f"and an MPI such as the mpich wheel), or run one process")
        return World()
    comm = MPI.COMM_WORLD
    return World(comm) if comm.Get_size() > 1 else World()


LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE",
                        "MV2_COMM_WORLD_LOCAL_SIZE")  # the ranks on this machine


def threads_per_rank() -> int:
    """Threads (Numba's and BLAS's) for a rank that was given none: the machine's cores
    shared by the ranks on it (0 in a one-rank world: leave the threads as they are)."""
    w = world()
    if w.size == 1:
        return 0
    local = next((int(os.environ[v]) for v in LOCAL_SIZE_VARIABLES
                  if os.environ.get(v, "").strip().isdigit()), w.size)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, local))


class NoLock:
    """What ranks other than 0 hold instead of the run folder's lock (they write nothing)."""

    def release(self) -> None:
        pass


@contextlib.contextmanager
def guard(w: World | None = None, agreed=()):
    """Errors on one rank end every rank: an exception other than the ``agreed``
    types (raised on every rank at once, e.g. a diverged loss) prints "rank r of
    N: ..." and aborts the job. With one rank, nothing is caught."""
    w = w or world()
    try:
        yield
    except BaseException as e:
        if w.size > 1 and not isinstance(e, tuple(agreed)) and not isinstance(e, SystemExit):
            w.abort(f"numformer: rank {w.rank} of {w.size} failed, stopping all ranks: "
                    f"{type(e).__name__}: {e}")
        raise


# the flat gradient buffer --------------------------------------------------------

class GradBuffer:
    """The gradients of ``params`` as views of one flat array ``flat``: each
    trainable Parameter's ``grad`` is re-pointed at its slice (its values
    kept), frozen ones (``grad is None``) are left out. ``bind()`` re-points
    after a Parameter was converted (astype) or unfrozen."""

    def __init__(self, params):
        self.params = list(params)
        self.flat: np.ndarray | None = None
        self.views: list[np.ndarray] = []
        self.bind()

    def _bound(self) -> bool:
        live = [p for p in self.params if p.grad is not None]
        return (self.flat is not None and len(live) == len(self.views)
                and all(p.grad is v for p, v in zip(live, self.views)))

    def bind(self) -> "GradBuffer":
        if self._bound():
            return self
        live = [p for p in self.params if p.grad is not None]
        dtypes = {p.grad.dtype for p in live}
        if len(dtypes) > 1:
            raise ValueError(f"GradBuffer: expected one dtype for every gradient, got "
                             f"{sorted(str(d) for d in dtypes)}")
        dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
        flat = np.empty(sum(p.grad.size for p in live), dtype=dtype)  # (P,)
        views, o = [], 0
        for p in live:
            v = flat[o:o + p.grad.size].reshape(p.grad.shape)
            v[...] = p.grad
            p.grad = v
            views.append(v)
            o += p.grad.size
        self.flat, self.views = flat, views
        return self

    @property
    def nbytes(self) -> int:
        return 0 if self.flat is None else self.flat.nbytes


def broadcast_parameters(params, w: World) -> None:
    """Every rank's Parameter values become rank 0's (one message per dtype)."""
    if w.size == 1:
        return
    by_dtype: dict = {}
    for p in params:
        by_dtype.setdefault(p.value.dtype, []).append(p)
    for dtype, ps in by_dtype.items():
        flat = np.concatenate([p.value.ravel() for p in ps]) if ps else np.empty(0, dtype)
        w.bcast_(flat)
        o = 0
        for p in ps:
            p.value[...] = flat[o:o + p.value.size].reshape(p.value.shape)
            o += p.value.size


# global batches and their parts ----------------------------------------------------

def batch_rows(batch) -> int:
    """The examples (rows) of a task's batch: an MLMBatch or a tuple of arrays."""
    ids = getattr(batch, "ids", None)
    if ids is None:
        ids = batch[0]
    return int(ids.shape[0])


def shard_rows(batch, lo: int, hi: int):
    """Rows ``lo:hi`` of a batch. An MLMBatch's flat positions (into B*T) are
    renumbered into the part's (hi-lo)*T; a tuple's arrays are cut on axis 0."""
    if hasattr(batch, "positions") and hasattr(batch, "targets"):
        T = batch.ids.shape[1]
        pos = batch.positions
        sel = (pos >= lo * T) & (pos < hi * T)  # (N,) the part's chosen positions
        index = None if getattr(batch, "index", None) is None else batch.index[lo:hi]
        return type(batch)(batch.ids[lo:hi], batch.key_mask[lo:hi], pos[sel] - lo * T,
                           batch.targets[sel], index)
    return type(batch)(a[lo:hi] for a in batch)


def loss_count(task, batch) -> int:
    """How many positions the task's loss is a mean over: ``task.loss_count(batch)``
    when the task has one, else the targets (``batch.targets`` or the tuple's last
    array) that are not the loss's ``ignore_index``."""
    if hasattr(task, "loss_count"):
        return int(task.loss_count(batch))
    targets = batch.targets if hasattr(batch, "targets") else batch[-1]
    ignore = getattr(getattr(task, "loss", None), "ignore_index", -100)
    return int(np.count_nonzero(np.asarray(targets) != ignore))


def shard_bounds(rows: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous (lo, hi) row ranges covering ``rows`` (sizes differ by <= 1)."""
    edges = [rows * j // parts for j in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _takes_weight(task) -> bool:
    try:
        return "weight" in inspect.signature(task.loss_and_backward).parameters
    except (TypeError, ValueError):
        return False


class DataParallel:
    """A model's data-parallel step over ``w`` (default: ``world()``) with
    ``grad_accum`` micro-batches per rank (see the module docstring). With one
    rank and one micro-batch, ``loss_and_backward`` is the task's own."""

    def __init__(self, model, grad_accum: int = 1, w: World | None = None, zero: int = 0):
        if isinstance(grad_accum, bool) or not isinstance(grad_accum, int) or grad_accum < 1:
            raise ValueError(f"grad_accum: expected an integer >= 1, got {grad_accum!r}")
        if zero not in (0, 1) or isinstance(zero, bool):
            raise ValueError(f"zero (--zero): expected 0 (off) or 1 (optimizer moments sharded "
                             f"across ranks), got {zero!r}")
        self.model = model
        self.zero = zero
        self.sharded = None  # the ZeRO-1 optimizer (numformer.zero), when there is one
        self.world = w or world()
        self.grad_accum = grad_accum
        self.grads: GradBuffer | None = None
        self.comm_seconds = 0.0  # time spent in the gradient reduction, summed

    @property
    def size(self) -> int:
        return self.world.size

    @property
    def rank(self) -> int:
        return self.world.rank

    @property
    def is_root(self) -> bool:
        return self.world.is_root

    @property
    def active(self) -> bool:
        return self.world.size > 1 or self.grad_accum > 1

    def optimizer(self, opt):
        """``opt``, or with ``zero=1`` on several ranks its sharded twin (numformer.zero)."""
        if self.zero and self.world.size > 1:
            from numformer.zero import ZeroAdam
            self.sharded = ZeroAdam(opt, self.model, self.world)
            return self.sharded
        return opt

    def clip_grad_norm(self, max_norm: float) -> float:
        """The global gradient norm, clipped to ``max_norm`` when it is > 0
        (optim.clip_grad_norm; with ZeRO-1, over the ranks' reduced shards)."""
        if self.sharded is not None:
            return self.sharded.clip_grad_norm(max_norm)
        from numformer.optim.clip import clip_grad_norm, grad_norm
        return clip_grad_norm(self.model, max_norm) if max_norm else grad_norm(self.model)

    def start(self) -> None:
        """Before the first step: rank 0's weights everywhere, the flat gradient buffer."""
        if self.world.size > 1:
            broadcast_parameters(self.model.parameters(), self.world)
            self.grads = GradBuffer(self.model.parameters())

    def loss_and_backward(self, task, batch, reseed=None) -> tuple[float, int]:
        """Forward and backward of this rank's parts of the global ``batch``; on return
        every rank holds the global batch's gradient (the single process's mean) and
        the global loss. ``reseed()`` resets the model's generators (to (seed, step))
        before each part. Returns (loss, tokens of the global batch)."""
        if not self.active:
            return task.loss_and_backward(batch)
        import time

        from numformer.nn.layers import batch_rows_from
        if not _takes_weight(task):
            raise TypeError(f"{type(task).__name__}.loss_and_backward: expected a ``weight`` "
                            f"argument (the upstream gradient of its loss) for data-parallel "
                            f"training or gradient accumulation")
        K, N, r = self.grad_accum, self.world.size, self.world.rank
        if N > 1 and self.grads is None:  # a step outside Trainer.fit
            self.start()
        bounds = shard_bounds(batch_rows(batch), N * K)
        total = loss_count(task, batch)
        loss = tokens = 0.0
        for lo, hi in bounds[r * K:(r + 1) * K]:
            if hi == lo:
                continue
            part = shard_rows(batch, lo, hi)
            n = loss_count(task, part)
            if n == 0 or total == 0:
                continue
            weight = n / total
            if reseed is not None:
                reseed()
            with batch_rows_from(lo):
                part_loss, part_tokens = task.loss_and_backward(part, weight=weight)
            loss += part_loss * weight
            tokens += part_tokens
        if N > 1:
            t0 = time.perf_counter()
            self.grads.bind()
            if self.sharded is not None:  # ZeRO-1: this rank's shard of the sum
                self.sharded.reduce_grads(self.grads.flat)
            else:
                self.world.allreduce_(self.grads.flat)
            sums = self.world.allreduce_(np.array([loss, tokens], dtype=np.float64))
            self.comm_seconds += time.perf_counter() - t0
            loss, tokens = float(sums[0]), sums[1]
        return float(loss), int(round(tokens))

    def agree(self, stop, state) -> None:
        """After a step: every rank takes the stop signal any rank saw (``stop.set``:
        "SIGINT" before "SIGTERM") and the largest training time (``state.seconds``)."""
        if self.world.size == 1:
            return
        s = stop.set
        v = self.world.allmax_(np.array([s == "SIGINT", s == "SIGTERM", state.seconds],
                                        dtype=np.float64))
        stop.set = "SIGINT" if v[0] else "SIGTERM" if v[1] else None
        state.seconds = float(v[2])

    def root_only(self, fn, *args, **kwargs):
        """``fn(*args)`` on rank 0 (which writes); every other rank waits for its outcome
        and returns None, or raises rank 0's error (the same type when it can be made
        from a message, else RuntimeError), so all ranks go on or stop together."""
        w = self.world
        if w.size == 1:
            return fn(*args, **kwargs)
        if w.is_root:
            try:
                out = fn(*args, **kwargs)
            except Exception as e:
                w.bcast_object((type(e), str(e)))
                raise
            w.bcast_object(None)
            return out
        err = w.bcast_object(None)
        if err is not None:
            kind, message = err
            try:
                e = kind(f"(on rank 0) {message}")
            except Exception:
                e = RuntimeError(f"rank 0: {kind.__name__}: {message}")
            raise e
        return None
