import json

from xrl.cli import main


def test_info_prints_versions(capsys):
    assert main(["info"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["torch"] and "bundled_checkpoints" in out
