"""The distributed tests need Ray (skipped without it). Their local cluster is the ``ray_cluster`` fixture of
tests/conftest.py, shared with the interface's Ray tests: Ray cannot be started twice in one process with a different
HOME (its auth token stays cached), so one cluster serves every test of a process:
``ray.init(num_cpus=2, include_dashboard=False, _temp_dir=...)`` with HOME pointing at a temporary folder while Ray
starts (it writes a token under ``~/.ray``) and usage statistics off. xrl.distributed uses a connection the caller
opened and leaves it open, so every test shares this cluster. Test modules register themselves for pickling by
value: Ray workers cannot import test modules, which are not installed.
"""
from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason='xrl.distributed needs the ray extra: pip install "xrl[ray]"')
