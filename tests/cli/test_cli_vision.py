"""`xrl vision interface` is wired to xrl.vision.interface (add_cli_arguments + run_cli)."""
import json

import pytest

from xrl.cli import main


def test_interface_options_come_from_the_interface_module(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["vision", "interface", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--agent", "--env", "--out", "--trajectories", "--steps", "--observations", "--obs-every",
                   "--features", "--layers", "--integrate-steps", "--seed", "--device", "--overwrite", "--quick",
                   "--no-progress", "--threads"):
        assert option in out, option


@pytest.mark.slow
def test_interface_quick_writes_an_index_page(tmp_path, capsys):
    out = tmp_path / "interface"
    assert main(["vision", "interface", "--agent", "breakout", "--out", str(out), "--quick", "--no-progress",
                 "--threads", "1"]) == 0
    index = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["index"]
    assert index.endswith("index.html") and (out / "index.html").is_file()


def test_interface_bad_agent_is_one_clear_line(tmp_path, capsys):
    assert main(["vision", "interface", "--agent", "brekout", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "xrl vision: error: agent:" in err and "breakout" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
