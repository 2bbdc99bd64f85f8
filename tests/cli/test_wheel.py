"""The wheel alone is the product: build it, install it in a fresh virtual environment outside the checkout, and run
`xrl --help` and every job's `--quick` mode from an empty folder.

The fresh environment reuses the already-installed dependencies (torch and the rest) through a ``.pth`` file that
names this interpreter's site-packages, added after the wheel is installed. Path entries from a ``.pth`` file do not
process the ``.pth`` files they contain, so an editable install of xrl there stays inactive: every ``import xrl``
below resolves to the wheel's copy (checked through ``xrl info``'s location), with its package data.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--quick", "--threads", "1", "--no-progress"]


def _run(cmd, cwd, env, timeout=600):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(xrl executable, env, work folder)`` of a fresh venv holding only the wheel (+ the reused dependencies)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"       # a clean copy: no stale build/ folder can leak files into the wheel
    shutil.copytree(ROOT / "xrl", src / "xrl", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HOME=str(os.environ.get("HOME", tmp)), MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w",
          tmp / "dist", src], cwd=tmp, env=env)
    wheel = next((tmp / "dist").glob("xrl-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp, env=env)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
         cwd=tmp, env=env)
    # only now make the dependencies visible (pip above saw a bare environment and could not touch another one)
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp,
                     env).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_xrl_test_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    work = tmp / "work"
    work.mkdir()
    return venv / "bin" / "xrl", env, work, site


def _last_json(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_installed_command_runs_from_the_wheel(installed):
    xrl, env, work, site = installed
    assert "cfrl" in _run([xrl, "--help"], work, env).stdout
    info = json.loads(_run([xrl, "info"], work, env).stdout)
    assert Path(info["location"]).resolve() == (site / "xrl").resolve(), "xrl was not imported from the wheel"
    assert set(info["pretrained"]) >= {"coinrun", "breakout", "freeway", "freeway_pomdp", "mnist_classifier",
                                       "mnist_autoencoder"}
    assert (site / "xrl" / "report" / "style.css").is_file()
    assert not (site / "xrl" / "_kernels" / "__pycache__").exists()


JOBS = {
    "cfrl mnist": (["cfrl", "mnist"], ["metrics.json", "random_targets.png", "target2.png", "explainer"]),
    "cfrl adult": (["cfrl", "adult"], ["metrics.json", "table.html", "counterfactuals.csv", "explainer"]),
    "agents train": (["agents", "train", "breakout"], ["checkpoint/agent.safetensors", "progress.csv",
                                                       "timing.json"]),
    "agents evaluate": (["agents", "evaluate", "breakout"], ["evaluation.json", "evaluation.md"]),
    "vision walkthrough": (["vision", "walkthrough"], ["results.json", "attribution.png", "feature_vis.png"]),
    "vision interface": (["vision", "interface", "--agent", "breakout"], ["index.html"]),
    "worldmodel train": (["worldmodel", "train"], ["checkpoint/agent.safetensors", "evaluation.json"]),
    "worldmodel explain": (["worldmodel", "explain"], ["explanation.json", "top_observations.png"]),
    "report": (["report"], ["index.html", "report.json"]),
}


@pytest.mark.parametrize("job", list(JOBS))
def test_every_job_runs_quick_from_the_wheel(installed, job):
    xrl, env, work, _ = installed
    argv, files = JOBS[job]
    out = work / job.replace(" ", "_")
    proc = _run([xrl, *argv, "--out", out, *QUICK], work, env)
    _last_json(proc)                                      # the one JSON line on stdout
    for name in files:
        assert (out / name).exists(), f"xrl {job} --quick did not write {name}"
    if job == "report":
        results = json.loads((out / "report.json").read_text())
        assert {k: v["status"] for k, v in results.items() if isinstance(v, dict) and "status" in v} == {
            "cfrl_mnist": "ok", "cfrl_adult": "ok", "vision": "ok", "worldmodel": "ok"}
        page = (out / "index.html").read_text()
        pngs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")
                      if "vision_interface" not in p.parts)
        assert pngs and [p for p in pngs if p not in page] == []
        assert "td class='chg'" in page                   # the Adult table with changed cells highlighted
        assert (out / results["vision"]["interface"]["index"]).is_file()
        assert results["vision"]["interface"]["index"] in page
