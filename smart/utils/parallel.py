"""Process pools for the file evaluators (PQ / mIoU from PNG folders)."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any


def pool_context():
    """``fork`` where the platform has it (workers inherit the imported modules), else ``spawn``."""
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


@contextmanager
def worker_map(fn: Callable[[Any], Any], tasks: Sequence[Any], *, workers: int, chunksize: int = 1,
               initializer: Callable[..., None] | None = None, initargs: tuple = ()) -> Iterator[Iterable[Any]]:
    """``fn`` over ``tasks``, results in task order: in this process (``workers`` 1) or in a process pool.

    Leaving the block early (an error while consuming results) drops the chunks not yet started and waits
    for the running ones. ``concurrent.futures`` is used rather than ``multiprocessing.Pool``, whose
    ``terminate()`` can deadlock when its feeder thread is blocked writing tasks to the workers.
    """
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield map(fn, tasks)
        return
    pool = ProcessPoolExecutor(workers, mp_context=pool_context(), initializer=initializer, initargs=initargs)
    try:
        yield pool.map(fn, tasks, chunksize=max(1, chunksize))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
