"""The interface over Ray (``workers=`` / ``--workers``): the same page as the serial build, and clear errors.

The local Ray cluster is tests/conftest.py's ``ray_cluster`` (2 CPUs, HOME in a temporary folder; shared with
tests/distributed, shut down at the end of the session). The Ray workers run only library functions (no test code
travels).
"""
from __future__ import annotations

import argparse
import socket
import sys
import time

import numpy as np
import pytest

from xrl.vision.interface import (NMFFit, Observations, add_cli_arguments, build_interface, build_interface_timed,
                                  prepare_config, read_page_data, run_work)
from xrl.vision.interface import work

pytestmark = pytest.mark.xdist_group("ray")


def _leaves(tree, path=""):
    """(path, leaf) of every number, string and list of numbers in the page data."""
    if isinstance(tree, dict):
        for k in sorted(tree):
            yield from _leaves(tree[k], f"{path}/{k}")
    elif isinstance(tree, list) and tree and all(isinstance(x, (dict, list)) for x in tree):
        for i, x in enumerate(tree):
            yield from _leaves(x, f"{path}[{i}]")
    else:
        yield path, tree


def _driver_must_not_run_items(*args, **kwargs):
    raise AssertionError("a work item ran in the driver process")


def test_workers_build_the_serial_page(ray_cluster, tiny, tiny_data, tmp_path, monkeypatch):
    """Every number of the page built by 2 Ray workers equals the serial page's (tiny page of the conftest)."""
    monkeypatch.setattr(work, "run_work_item", _driver_must_not_run_items)   # the workers import their own copy
    path = build_interface("breakout", tmp_path / "ray", progress=False, workers=2, **tiny)
    data = read_page_data(path)
    assert ray_cluster.is_initialized()                                 # the caller's connection is left open
    serial = dict(_leaves(tiny_data))
    spread = dict(_leaves(data))
    skip = ("/timing", "/generator/created")                             # wall times and the date differ
    keys = {k for k in serial if not k.startswith(skip)}
    assert keys == {k for k in spread if not k.startswith(skip)}
    assert any("attribution" in k or "totals" in k for k in keys), sorted(keys)[:20]
    compared = 0
    for key in sorted(keys):
        a, b = serial[key], spread[key]
        if isinstance(a, float) or (isinstance(a, list) and a and isinstance(a[0], (float, list))):
            np.testing.assert_allclose(np.asarray(b, float), np.asarray(a, float), rtol=1e-6, atol=1e-6,
                                       err_msg=key)
        else:
            assert a == b, key                       # ints, strings, images (PNG data URIs), int8 map codes
        compared += 1
    assert compared > 50


def test_bad_workers_and_addresses_fail_before_any_work(ray_cluster, tiny, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="workers: expected a value >= 1"):
        build_interface("breakout", tmp_path / "a", progress=False, workers=0, **tiny)
    with pytest.raises(TypeError, match="workers: expected an int"):
        build_interface("breakout", tmp_path / "a", progress=False, workers=1.5, **tiny)
    with pytest.raises(TypeError, match="address: expected None"):
        build_interface("breakout", tmp_path / "a", progress=False, address=6379, **tiny)
    with pytest.raises(ValueError, match=r"num_workers: expected workers that fit the cluster: 3 x 1 CPU"):
        build_interface("breakout", tmp_path / "a", progress=False, workers=3, **tiny)
    assert not (tmp_path / "a").exists()
    with socket.socket() as s:                                            # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(ray_cluster, "is_initialized", lambda: False)    # as in a fresh process
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match=rf"address: could not reach a Ray cluster at '127.0.0.1:{port}'"):
        build_interface("breakout", tmp_path / "b", progress=False, address=f"127.0.0.1:{port}", **tiny)
    assert time.perf_counter() - start < 30 and not (tmp_path / "b").exists()


def test_a_failing_item_is_named(ray_cluster, tiny):
    from xrl.distributed import WorkerError

    config, _, _ = prepare_config("breakout", **tiny)
    with pytest.raises(WorkerError, match=r"chunk 0 of 1 \(item 0: NMFFit\(layer='no_such_layer'\)\) failed"):
        run_work(config, items=[[Observations()], [NMFFit("no_such_layer")]], workers=2, progress=False)


def test_without_ray_the_error_names_the_extra(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)                       # import ray -> ImportError
    with pytest.raises(ImportError, match=r'pip install "xrl\[ray\]"'):
        build_interface_timed("breakout", tmp_path / "c", progress=False, workers=2, **tiny)
    assert not (tmp_path / "c").exists()


def test_cli_flags():
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    args = parser.parse_args(["--agent", "breakout", "--workers", "4", "--address", "auto"])
    assert (args.workers, args.address) == (4, "auto")
    args = parser.parse_args(["--agent", "breakout"])
    assert (args.workers, args.address) == (None, None)
