"""`xrl vision interface` is wired to xrl.vision.interface (add_cli_arguments + run_cli); without the module it says
so in one line."""
import importlib.util
import json

import pytest

from xrl.cli import main

HAS_INTERFACE = importlib.util.find_spec("xrl.vision.interface") is not None
needs_interface = pytest.mark.skipif(not HAS_INTERFACE, reason="xrl.vision.interface is not in this checkout yet "
                                     "(it comes with the interface branch); run again after merging it")


@needs_interface
def test_interface_options_come_from_the_interface_module(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["vision", "interface", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--agent", "--env", "--out", "--trajectories", "--steps", "--observations", "--obs-every",
                   "--features", "--layers", "--integrate-steps", "--seed", "--device", "--overwrite", "--quick",
                   "--no-progress", "--threads"):
        assert option in out, option


@needs_interface
@pytest.mark.slow
def test_interface_quick_writes_an_index_page(tmp_path, capsys):
    out = tmp_path / "interface"
    assert main(["vision", "interface", "--agent", "breakout", "--out", str(out), "--quick", "--no-progress",
                 "--threads", "1"]) == 0
    index = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["index"]
    assert index.endswith("index.html") and (out / "index.html").is_file()


@pytest.mark.skipif(HAS_INTERFACE, reason="only meaningful without xrl.vision.interface")
def test_without_the_module_the_command_says_so(capsys):
    assert main(["vision", "interface", "--agent", "breakout"]) == 2
    assert "needs xrl.vision.interface" in capsys.readouterr().err
