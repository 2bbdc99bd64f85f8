"""The command line: the issue's flags with their names, --quick, and clear errors with exit code 2."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from xrl.vision.interface import add_cli_arguments, read_page_data, run_cli
from xrl.vision.interface.cli import QUICK, main


def parse(argv):
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    return parser.parse_args(argv)


def test_flags_and_defaults():
    args = parse(["--agent", "coinrun"])
    for flag in ("agent", "env", "out", "trajectories", "steps", "observations", "obs_every", "features", "layers",
                 "integrate_steps", "seed", "device", "overwrite", "quick", "no_progress"):
        assert hasattr(args, flag), flag
    assert (args.features, args.integrate_steps, args.seed, args.overwrite, args.quick) == (8, 10, 0, False, False)
    from xrl.vision.interface.cli import _settings

    assert _settings(args) == {"trajectories": 8, "steps": 512, "observations": 4096, "obs_every": 128,
                               "fv_steps": 512}
    quick = _settings(parse(["--agent", "breakout", "--quick", "--steps", "64"]))
    assert quick == {**QUICK, "steps": 64}                             # explicit flags win over --quick


def test_run_cli_builds_a_page(tmp_path, capsys):
    args = parse(["--agent", "breakout", "--out", str(tmp_path / "page"), "--trajectories", "1", "--steps", "16",
                  "--observations", "32", "--obs-every", "4", "--features", "2", "--layers", "embedder.block1",
                  "--integrate-steps", "2", "--fv-steps", "4", "--seed", "3", "--no-progress"])
    path = run_cli(args)
    assert path == tmp_path / "page" / "index.html"
    assert f"wrote {path}" in capsys.readouterr().out
    data = read_page_data(path)
    assert data["settings"]["seed"] == 3 and data["settings"]["layers"] == ["embedder.block1"]
    with pytest.raises(ValueError, match="already exists"):
        run_cli(args)
    assert main(["--agent", "breakout", "--out", str(tmp_path / "page"), "--no-progress"]) == 2
    assert "error: out: the folder" in capsys.readouterr().err


@pytest.mark.slow                                                      # a fresh interpreter imports torch
def test_module_entry_point_reports_bad_agent(tmp_path):
    res = subprocess.run([sys.executable, "-m", "xrl.vision.interface", "--agent", "frewey", "--out",
                          str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "error: agent: expected a bundled agent name" in res.stderr and "did you mean 'freeway'?" in res.stderr
    assert not (tmp_path / "x").exists()
