"""The `xrl` command tree: every job has --help and the common options; user errors are one clear line."""
import json

import pytest
import torch

from xrl.cli import build_parser, main

JOBS = [["cfrl", "mnist"], ["cfrl", "adult"], ["agents", "train"], ["agents", "evaluate"], ["vision", "walkthrough"],
        ["worldmodel", "train"], ["worldmodel", "explain"], ["report"]]


def _help(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv + ["--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_every_command(capsys):
    out = _help(capsys, [])
    for command in ("info", "report", "cfrl", "agents", "vision", "worldmodel"):
        assert command in out


@pytest.mark.parametrize("job", JOBS, ids=[" ".join(j) for j in JOBS])
def test_every_job_has_help_and_the_common_options(capsys, job):
    out = _help(capsys, job)
    for option in ("--out", "--seed", "--device", "--quick", "--threads"):
        assert option in out, f"xrl {' '.join(job)} lacks {option}"


@pytest.mark.parametrize("group", ["cfrl", "agents", "vision", "worldmodel"])
def test_a_group_without_a_job_is_a_usage_error(capsys, group):
    with pytest.raises(SystemExit) as exc:
        main([group])
    assert exc.value.code == 2
    assert "required" in capsys.readouterr().err


def test_unknown_option_is_a_usage_error_naming_it(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["cfrl", "mnist", "--trian-steps", "5"])
    assert exc.value.code == 2
    assert "--trian-steps" in capsys.readouterr().err


def test_info_lists_every_bundled_model(capsys):
    assert main(["info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["torch"] == torch.__version__
    assert set(info["pretrained"]) >= {"coinrun", "breakout", "freeway", "freeway_pomdp", "mnist_classifier",
                                       "mnist_autoencoder"}


def test_bad_agent_name_is_one_line_with_the_accepted_names(tmp_path, capsys):
    code = main(["agents", "evaluate", "brekaout", "--out", str(tmp_path / "e"), "--quick"])
    err = capsys.readouterr().err
    assert code == 2
    assert "agent:" in err and "'brekaout'" in err and "breakout" in err and "Traceback" not in err


def test_threads_zero_is_refused(tmp_path, capsys):
    before = torch.get_num_threads()
    with pytest.raises(SystemExit, match="--threads"):
        main(["worldmodel", "explain", "--threads", "0", "--out", str(tmp_path)])
    assert torch.get_num_threads() == before


def test_set_must_be_field_equals_json(tmp_path, capsys):
    code = main(["worldmodel", "train", "--quick", "--out", str(tmp_path / "w"), "--set", "batch_size=eight"])
    assert code == 2
    assert "--set: expected FIELD=JSON" in capsys.readouterr().err


def test_parser_builds_without_importing_torch_heavy_jobs():
    # building the parser must stay cheap: job modules are imported when a job runs
    import sys

    for mod in ("xrl.jobs.cfrl_mnist", "xrl.jobs.vision", "xrl.report.page"):
        sys.modules.pop(mod, None)
    build_parser()
    assert "xrl.jobs.cfrl_mnist" not in sys.modules and "xrl.jobs.vision" not in sys.modules
