"""Connecting, failing clearly, and leaving the cluster as found: no Ray, unreachable clusters, dying workers,
work items in order, and a local instance started for a call that is gone after it."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
import xrl.distributed as xd  # noqa: E402
from xrl.models import ImpalaCNN  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = pytest.mark.xdist_group("ray")


def test_without_ray_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    with pytest.raises(ImportError, match=r'pip install "xrl\[ray\]"'):
        xd.map_items(abs, [1], num_workers=1)
    agent = ImpalaCNN((4, 10, 10), 3, channels=(4, 8, 8), fc_dim=16)
    with pytest.raises(ImportError, match=r'pip install "xrl\[ray\]"'):
        xd.collect_trajectories(agent, "breakout", num_workers=1, num_envs=2, num_steps=2, progress=False)


def test_an_unreachable_cluster_fails_fast_and_clearly(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh process
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match=rf"address: could not reach a Ray cluster at '127.0.0.1:{port}'.*"
                                              r"ray start --head"):
        xd.map_items(abs, [1], num_workers=1, address=f"127.0.0.1:{port}")
    assert time.perf_counter() - start < 15  # Ray alone retries for minutes
    with pytest.raises(TypeError, match="address: expected None"):
        xd.map_items(abs, [1], num_workers=1, address=6379)


def test_an_open_connection_is_used_and_left_open(ray_cluster):
    with pytest.raises(ValueError, match="address: expected None when this process is already connected"):
        xd.map_items(abs, [1], num_workers=1, address="auto")
    with pytest.raises(ValueError, match=r"num_workers: expected workers that fit the cluster: 3 x 1 CPU = 3 CPU, "
                                         r"the cluster has 2"):
        xd.map_items(abs, [1, 2, 3], num_workers=3)
    assert ray.is_initialized()


def load_table(scale):
    return np.arange(4) * scale


def lookup(item, table):
    return int(table[item]) + os.getpid() * 0, os.getpid()


def test_map_items_in_order_with_one_setup_per_worker(ray_cluster):
    results = xd.map_items(lookup, [3, 0, 2, 1, 3, 3], num_workers=2, setup=lambda: load_table(10), progress=False)
    assert [r[0] for r in results] == [30, 0, 20, 10, 30, 30]
    assert 1 <= len({r[1] for r in results}) <= 2 and os.getpid() not in {r[1] for r in results}
    assert ray.is_initialized()  # the caller's connection is left open


def explode(item):
    if item == 2:
        os._exit(3)  # the worker process dies (as when the system kills it for memory)
    return item


def test_setup_errors_and_dying_workers_are_named(ray_cluster):
    with pytest.raises(xd.WorkerError, match="items: worker 0 could not be set up: setup.. raised KeyError: 'gpu'"):
        xd.map_items(lookup, [1], num_workers=1, setup=lambda: {}["gpu"], progress=False)
    with pytest.raises(xd.WorkerError, match=r"chunk 2 of 4 \(item 2: 2\) failed: .*no partial result") as info:
        xd.map_items(explode, [0, 1, 2, 3], num_workers=1, progress=False)
    assert info.value.chunk == 2 and info.value.cause is None


@pytest.mark.slow
def test_a_local_instance_started_for_a_call_is_shut_down_after_it():
    """address=None in a process without Ray: ``with cluster():`` starts a local instance for the calls inside and
    shuts it down after them (a lone call goes through the same ``cluster``; a fresh process, so that the session's
    cluster is not involved)."""
    root = Path(tempfile.mkdtemp(prefix="xrl-ray-"))  # short: Ray's socket paths live under it
    home, tmp = root / "home", root / "ray"
    home.mkdir()
    tmp.mkdir()
    code = ("import ray, xrl.distributed as xd\n"
            "with xd.cluster():\n"
            "    first = xd.map_items(abs, [-2], num_workers=1, progress=False)\n"
            "    assert ray.is_initialized() and xd.map_items(abs, [3], num_workers=1, progress=False) == [3]\n"
            "print(first, ray.is_initialized())\n")
    env = {**os.environ, "HOME": str(home), "RAY_TMPDIR": str(tmp), "RAY_USAGE_STATS_ENABLED": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("[2] False")
    assert any(tmp.iterdir())  # the instance ran under RAY_TMPDIR ...
    time.sleep(1)
    left = []  # ... and none of its processes is left
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if str(tmp).encode() in f.read():
                    left.append(pid)
        except OSError:
            pass
    shutil.rmtree(root, ignore_errors=True)
    assert not left, f"Ray processes left running: {left}"
