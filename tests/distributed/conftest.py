"""One local Ray cluster for the distributed tests (started once per test process, shut down at the end).

``ray.init(num_cpus=2, include_dashboard=False, _temp_dir=...)`` with HOME pointing at a temporary folder while Ray
starts (it writes a token under ``~/.ray``) and usage statistics off. xrl.distributed uses a connection the caller
opened and leaves it open, so every test shares this cluster. Test modules register themselves for pickling by
value: Ray workers cannot import test modules, which are not installed.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

ray = pytest.importorskip("ray", reason='xrl.distributed needs the ray extra: pip install "xrl[ray]"')


@pytest.fixture(scope="session")
def ray_cluster():
    saved = {k: os.environ.get(k) for k in ("HOME", "RAY_USAGE_STATS_ENABLED")}
    root = tempfile.mkdtemp(prefix="xrl-ray-")  # short: Ray's socket paths live under it
    os.environ.update(HOME=os.path.join(root, "home"), RAY_USAGE_STATS_ENABLED="0")
    os.makedirs(os.environ["HOME"])
    assert not ray.is_initialized(), "another test left Ray connected"
    try:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=os.path.join(root, "ray"), log_to_driver=False)
    finally:  # Ray's processes keep this environment; the other tests get theirs back (HOME holds data caches)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)
