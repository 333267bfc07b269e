"""harness.pools: a pool is made once, made again after forget(), and a forked child starts without it."""
from __future__ import annotations

import os

import pytest

from harness.pools import LazyPool


def test_one_pool_until_forgotten_and_its_size_asked_for_at_first_use():
    sizes = iter([3, 1])
    pool = LazyPool("opdiff-test", lambda: next(sizes))
    first = pool.get()
    assert pool.get() is first and first._max_workers == 3
    assert first.submit(lambda: 7).result() == 7
    pool.forget()
    assert pool.get() is not first and pool.get()._max_workers == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_has_no_pool_of_its_parent():
    pool = LazyPool("opdiff-test", 2)
    pool.get().submit(lambda: None).result()          # the parent's threads exist
    pid = os.fork()
    if pid == 0:                                       # the child: its pool must be made anew
        os._exit(0 if pool._executor is None and pool.get().submit(lambda: 5).result() == 5 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
