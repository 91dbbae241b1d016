"""ZeRO stage 1 for numformer.distributed: Adam/AdamW moments sharded across ranks.

With ``--zero 1`` on N ranks, each rank keeps the moments (m, v) of 1/N of
the parameters instead of all of them (Rajbhandari et al., "ZeRO", 2020,
stage 1). Every trainable Parameter's value is a view of one flat array
(as its gradient is a view of the flat gradient buffer, same order), cut
into N contiguous shards. A step:

    reduce-scatter   the flat gradients: rank r receives the sum of shard r
    clip             global norm = sqrt(sum over ranks of |shard|^2)
    update           Adam on shard r only (the parameters' slices in it,
                     each with its group's weight decay)
    all-gather       every rank's updated shard into every rank's flat values

The two collectives move what one Allreduce moves, so the communication is
the same; the results equal the unsharded optimizer's (the update is
elementwise; only the norm's summation order differs). ``state_dict()``
gathers the moments into the unsharded optimizer's format, so a checkpoint
does not depend on N or on ``--zero``; ``load_state_dict`` takes that format
and keeps this rank's shard.
"""

from __future__ import annotations

import math

import numpy as np

from numformer import kernels
from numformer.distributed import World, shard_bounds
from numformer.optim.adam import Adam


class ZeroAdam:
    """``opt`` (an Adam or AdamW over ``model``) with its moments sharded over ``w``.
    Exposes what the training loop uses: ``lr``, ``t``, ``step()``,
    ``state_dict()``, ``load_state_dict()``, plus ``reduce_grads(flat)`` and
    ``clip_grad_norm(max_norm)``."""

    def __init__(self, opt, model, w: World):
        if not isinstance(opt, Adam):
            raise ValueError(f"zero: ZeRO stage 1 shards Adam and AdamW moments; got "
                             f"{type(opt).__name__} (use --optimizer adamw or adam, or --zero 0)")
        self.opt, self.world = opt, w
        live = [p for p in model.parameters() if p.grad is not None]
        dtypes = {p.value.dtype for p in live}
        if len(dtypes) != 1:
            raise ValueError(f"zero: expected one dtype for every trainable parameter, got "
                             f"{sorted(map(str, dtypes))}")
        dtype = dtypes.pop()
        self.flat = np.empty(sum(p.size for p in live), dtype=dtype)  # (P,) every value
        index = {id(p): i for i, p in enumerate(opt.params)}
        wd = {id(p): g.weight_decay for g in opt.groups for p in g.params}
        self.layout = []  # (Parameter, flat offset, optimizer index, weight decay)
        o = 0
        for p in live:
            view = self.flat[o:o + p.size].reshape(p.shape)
            view[...] = p.value
            p.value = view
            self.layout.append((p, o, index[id(p)], wd[id(p)]))
            o += p.size
        self.bounds = shard_bounds(self.flat.size, w.size)
        self.counts = [hi - lo for lo, hi in self.bounds]
        self.lo, self.hi = self.bounds[w.rank]
        n = self.hi - self.lo
        self.grad = np.zeros(n, dtype=dtype)  # (n,) this rank's reduced gradient shard
        self.m = np.zeros(n, dtype=dtype)
        self.v = np.zeros(n, dtype=dtype)
        self._free_inner_state()

    def _free_inner_state(self) -> None:
        for b in self.opt.state:
            self.opt.state[b] = [None] * len(self.opt.params)

    # what the loop reads and sets on an optimizer
    @property
    def lr(self) -> float:
        return self.opt.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.opt.lr = value

    @property
    def t(self) -> int:
        return self.opt.t

    def _pieces(self):
        """(parameter slice, offset in the shard, length, weight decay) of each
        parameter's part in this rank's shard."""
        for p, o, _, wd in self.layout:
            a, b = max(self.lo, o), min(self.hi, o + p.size)
            if a < b:
                yield self.flat[a:b], a - self.lo, b - a, wd

    def reduce_grads(self, flat_grad: np.ndarray) -> None:
        """Sum the ranks' flat gradients, this rank receiving its shard."""
        from mpi4py import MPI
        self.world.comm.Reduce_scatter(flat_grad, self.grad, recvcounts=self.counts,
                                       op=MPI.SUM)

    def clip_grad_norm(self, max_norm: float) -> float:
        """The global norm of the reduced gradient (float64 sums); clipped in place to
        ``max_norm`` (0 = only the norm), as optim.clip_grad_norm does."""
        g = self.grad.astype(np.float64, copy=False)
        total = self.world.allreduce_(np.array([np.dot(g, g)], dtype=np.float64))
        norm = math.sqrt(float(total[0]))
        if max_norm and math.isfinite(norm) and norm > max_norm:
            self.grad *= self.grad.dtype.type(max_norm / (norm + 1e-6))
        return norm

    def step(self) -> None:
        """Adam on this rank's shard, then every rank's shard to every rank."""
        from mpi4py import MPI
        opt = self.opt
        opt.t += 1
        op = kernels.op("adam")
        for p, s, n, wd in self._pieces():
            op.adam_step(p, self.grad[s:s + n], self.m[s:s + n], self.v[s:s + n], lr=opt.lr,
                         beta1=opt.beta1, beta2=opt.beta2, eps=opt.eps, weight_decay=wd,
                         step=opt.t, decoupled=opt.decoupled)
        displs = [lo for lo, _ in self.bounds]
        self.world.comm.Allgatherv(MPI.IN_PLACE, [self.flat, (self.counts, displs)])

    def _gather(self, shard: np.ndarray) -> np.ndarray:
        full = np.empty(self.flat.size, dtype=shard.dtype)
        displs = [lo for lo, _ in self.bounds]
        self.world.comm.Allgatherv(shard, [full, (self.counts, displs)])
        return full

    def state_dict(self) -> dict:
        """The unsharded optimizer's state_dict (collective: every rank calls it)."""
        m, v = self._gather(self.m), self._gather(self.v)
        for p, o, i, _ in self.layout:
            self.opt.state["m"][i] = m[o:o + p.size].reshape(p.shape)
            self.opt.state["v"][i] = v[o:o + p.size].reshape(p.shape)
        try:
            return self.opt.state_dict()
        finally:
            self._free_inner_state()

    def load_state_dict(self, sd: dict) -> None:
        """An unsharded state_dict (any number of ranks wrote it): this rank's shard."""
        self.opt.load_state_dict(sd)
        for b, shard in (("m", self.m), ("v", self.v)):
            for p, o, i, _ in self.layout:
                a, e = max(self.lo, o), min(self.hi, o + p.size)
                if a < e:
                    shard[a - self.lo:e - self.lo] = self.opt.state[b][i].reshape(-1)[a - o:e - o]
        self._free_inner_state()
