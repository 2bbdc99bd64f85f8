"""One tiny real page (bundled Breakout agent, 2 x 48 frames, 2 layers) built once for the interface tests."""
from __future__ import annotations

import pytest

TINY = dict(trajectories=2, steps=48, observations=64, obs_every=8, features=3,
            layers=["embedder.block1", "embedder.block2"], integrate_steps=4, seed=0, fv_steps=16)


@pytest.fixture(scope="session")
def tiny():
    """The settings of the tiny page (a copy)."""
    return dict(TINY, layers=list(TINY["layers"]))


@pytest.fixture(scope="session")
def tiny_page(tmp_path_factory):
    """(path of index.html, build timing) of a page built with :data:`TINY` settings."""
    from xrl.vision.interface import build_interface_timed

    out = tmp_path_factory.mktemp("interface") / "breakout"
    path, timing = build_interface_timed("breakout", out, progress=False, **TINY)
    return path, timing


@pytest.fixture(scope="session")
def tiny_data(tiny_page):
    from xrl.vision.interface import read_page_data

    return read_page_data(tiny_page[0])
