"""item_workers: one set of Ray workers, set up once, for several lists of items (stages of dependent work)."""
from __future__ import annotations

import os
import sys
from functools import partial

import pytest

ray = pytest.importorskip("ray")
import xrl.distributed as xd  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = pytest.mark.xdist_group("ray")


def load_state():
    return {"pid": os.getpid(), "offset": 100}


def add(item, state, *, extra=0):
    return item + state["offset"] + extra, state["pid"], os.getpid()


def test_workers_and_their_setup_serve_several_maps(ray_cluster):
    with xd.item_workers(num_workers=2, setup=load_state) as workers:
        assert workers.num_workers == 2
        first = workers.map(add, [1, 2, 3, 4], progress=False)
        second = workers.map(partial(add, extra=sum(r[0] for r in first)), [5, 6], progress=False)
        with pytest.raises(xd.WorkerError, match=r"chunk 1 of 2 \(item 1: 'x'\) failed: TypeError"):
            workers.map(add, [0, "x"], progress=False)
        with pytest.raises(RuntimeError, match="the workers are gone"):
            workers.map(add, [0], progress=False)
    assert [r[0] for r in first] == [101, 102, 103, 104] and [r[0] for r in second] == [515, 516]
    pids = {r[2] for r in first + second}
    assert all(r[1] == r[2] for r in first + second)       # the state was made in the process that used it
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids  # and once per worker, for both maps
    assert ray.is_initialized()
    with pytest.raises(ValueError, match="num_workers: expected a value >= 1"):
        with xd.item_workers(num_workers=0):
            pass
