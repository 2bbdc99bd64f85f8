"""docs/distributed.md's local example runs as written (on the session's local cluster)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("ray")

DOC = Path(__file__).resolve().parents[2] / "docs" / "distributed.md"


def _tested_blocks() -> list[str]:
    text = DOC.read_text()
    return re.findall(r"<!-- tested: tests/distributed/test_docs.py runs this block -->\n```python\n(.*?)```", text,
                      re.S)


@pytest.mark.slow
def test_the_local_example_runs(ray_cluster, tmp_path, monkeypatch):
    blocks = _tested_blocks()
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)  # the example saves "digits_cfrl" in the working directory
    namespace = {"__name__": "distributed_md_example"}  # not importable: Ray pickles its functions by value
    exec(compile(blocks[0], str(DOC), "exec"), namespace)
    assert (tmp_path / "digits_cfrl" / "config.json").is_file()
    assert namespace["exp"].data["cf"]["X"].shape == (500, 1, 8, 8)
    assert namespace["traj"].obs.shape == (4, 32, 4, 10, 10)
