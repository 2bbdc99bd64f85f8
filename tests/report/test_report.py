"""`xrl report`: a failing section is shown and does not stop the others (the full quick report runs from the
installed wheel in tests/cli/test_wheel.py, which also checks that index.html links every figure)."""
import json

import pytest

from xrl import report
from xrl.cli import main
from xrl.report import ReportSettings, build_report


def test_a_failing_section_is_reported_and_the_others_run(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("adult data unavailable")

    monkeypatch.setattr("xrl.jobs.cfrl_adult.run", broken)
    calls = []
    monkeypatch.setattr(report, "_worldmodel", lambda out, cfg, seed, device: calls.append(seed) or {
        "explanation": {"batch": 1, "seq_len": 2, "categoricals": 20, "classes": 20, "rank": 2,
                        "reconstruction_error": 0.1, "returns": [0.0], "pngs": []}, "ground_truth": {"best": []}})
    index = build_report(tmp_path, sections=("cfrl_adult", "worldmodel"), seed=3, progress=False,
                         settings=ReportSettings.quick())
    results = json.loads((tmp_path / "report.json").read_text())
    assert results["cfrl_adult"]["status"] == "failed" and "adult data unavailable" in results["cfrl_adult"]["error"]
    assert results["worldmodel"]["status"] == "ok" and calls == [3]
    page = index.read_text()
    assert "This section failed" in page and "adult data unavailable" in page


def test_cli_exit_status_is_one_when_a_section_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(report, "_worldmodel", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    assert main(["report", "--quick", "--out", str(tmp_path), "--sections", "worldmodel", "--no-progress"]) == 1
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sections"] == {"worldmodel": "failed"}


def test_unknown_section_is_refused(tmp_path):
    with pytest.raises(ValueError, match="sections: expected one of"):
        build_report(tmp_path, sections=("cfrl",))
