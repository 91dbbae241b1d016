"""The training loop's step bar (tqdm): a time left that is right from the first
steps after compilation (numformer.train.loop uses these as ``_progress`` and
``_advance``)."""

from __future__ import annotations


def progress_bar(enabled: bool, total: int, initial: int):
    """The step bar (tqdm), or None. Its time left is remaining steps / rate, the
    rate an exponential moving average of steps per second between refreshes;
    ``advance`` keeps the first step of a fit (JIT compilation, first-touch
    allocations) out of that rate."""
    if not enabled:
        return None
    import sys

    from tqdm.auto import tqdm
    # on a terminal: live; in a log file: a line every 30 s
    interval = 0.2 if sys.stderr.isatty() else 30.0
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, smoothing=0.1,
                mininterval=interval)


def advance(bar) -> None:
    """One step done. After the bar's first step (a fit's), its clock and rate
    estimates restart (``reset``) with the steps done so far counted as its
    starting point (``initial``), so neither the EMA rate nor the fallback
    (n - initial) / elapsed sees the warm-up step: with it, the default mlm run's
    first estimates of the time left were about twice the real one for minutes."""
    bar.update(1)
    if not getattr(bar, "warm", False):
        bar.warm = True
        done = bar.n
        bar.reset()  # start_t = last_print_t = now, fresh EMAs of dn, dt, miniters
        bar.n = bar.last_print_n = bar.initial = done  # counted as done, not as speed
        bar.refresh()
