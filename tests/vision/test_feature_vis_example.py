"""examples/coinrun_feature_vis.py, the script behind docs/images/fv_coinrun.png, runs on the bundled agent."""
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("procgen")
from PIL import Image  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "coinrun_feature_vis.py"


@pytest.mark.slow
def test_feature_vis_figure(tmp_path, monkeypatch, capsys):
    def draw(features: int) -> tuple[dict, np.ndarray]:
        out = tmp_path / f"fv{features}.png"
        monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--out", str(out), "--num-obs", "64", "--obs-every", "4",
                                          "--steps", "4", "--features", str(features)])
        threads = torch.get_num_threads()
        try:
            runpy.run_path(str(SCRIPT), run_name="__main__")
        finally:  # the script sets its own thread count (--threads): the rest of this test process keeps its own
            torch.set_num_threads(threads)
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        with Image.open(out) as im:
            assert im.mode == "P"                                   # saved as a 256-colour palette
            return line, np.asarray(im.convert("RGB"))

    line, img = draw(2)
    assert line["observations"] == 64 and line["features"] == 2 and line["layer"] == "embedder.block2"
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 16        # pictures, not a blank canvas
    _, wider = draw(4)
    assert wider.shape[1] > img.shape[1] * 1.3                      # one column per direction
    assert abs(wider.shape[0] - img.shape[0]) < 0.1 * img.shape[0]  # always three rows
