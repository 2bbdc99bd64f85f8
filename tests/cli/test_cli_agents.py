"""`xrl agents train` keeps the resumable run layout, stops on a deadline, starts from a bundled agent;
`xrl agents evaluate` writes the table and a loadable float16 bundle."""
import csv
import json

import pytest
import torch

from xrl import io
from xrl.agents import load_agent
from xrl.cli import main
from xrl.pretrained import load_pretrained

QUICK = ["--quick", "--threads", "1", "--no-progress"]


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_train_writes_the_run_layout_and_resumes(tmp_path, capsys):
    run = tmp_path / "run"
    before = torch.get_num_threads()
    assert main(["agents", "train", "breakout", "--out", str(run), *QUICK, "--total-timesteps", "128"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["global_step"] == 128
    for name in ("agent.safetensors", "agent.json", "optimizer.safetensors", "optimizer.json", "state.json"):
        assert (run / "checkpoint" / name).is_file(), name
    assert len(_rows(run / "progress.csv")) == 1
    # the same command with a larger budget continues from the checkpoint
    assert main(["agents", "train", "breakout", "--out", str(run), *QUICK, "--total-timesteps", "256"]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["global_step"] == 256
    assert len(_rows(run / "progress.csv")) == 2
    timing = io.load_json(run / "timing.json")
    assert [r["global_step"] for r in timing["runs"]] == [128, 256]
    assert all(r["command"].startswith("xrl agents train breakout") and r["threads"] == 1 for r in timing["runs"])
    torch.set_num_threads(before)


def test_a_run_stopped_mid_training_keeps_its_time_and_its_bundle_lists_the_command_once(tmp_path, capsys,
                                                                                         ctrl_c_at_write):
    from xrl.jobs import agents

    run, kwargs = tmp_path / "run", dict(total_timesteps=512, num_envs=4, num_steps=32, channels=(8, 16, 16),
                                         fc_dim=64, progress=False, command="xrl agents train breakout ...")
    with ctrl_c_at_write(3, only="timing.json"):   # as a kill during the third update
        agents.train("breakout", run, **kwargs)
    stopped = io.load_json(run / "timing.json")
    assert [r["global_step"] for r in stopped["runs"]] == [256] and stopped["seconds"] > 0
    assert agents.train("breakout", run, **kwargs)["global_step"] == 512
    timing = io.load_json(run / "timing.json")
    assert [r["global_step"] for r in timing["runs"]] == [256, 512]
    assert timing["seconds"] == pytest.approx(sum(r["seconds"] for r in timing["runs"]), abs=0.2)
    bundle = tmp_path / "bundle"
    assert main(["agents", "evaluate", str(run), "--out", str(tmp_path / "eval"), "--bundle", str(bundle),
                 *QUICK]) == 0
    readme = (bundle / "README.md").read_text()
    assert readme.count("xrl agents train breakout ...") == 1 and "2 calls (resumed)" in readme


def test_time_limit_stops_after_the_first_update(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["agents", "train", "breakout", "--out", str(run), *QUICK, "--total-timesteps", "512",
                 "--time-limit", "0.00001"]) == 0
    assert io.load_json(run / "checkpoint" / "state.json")["global_step"] == 128


def test_init_from_a_bundled_agent_starts_from_its_weights(tmp_path, capsys):
    bundled = load_pretrained("breakout")
    run = tmp_path / "run"
    assert main(["agents", "train", "breakout", "--out", str(run), *QUICK, "--total-timesteps", "128",
                 "--init-from", "breakout"]) == 0
    trained = load_agent(run)
    assert trained.channels == bundled.channels and trained.fc_dim == bundled.fc_dim
    b, t = torch.nn.utils.parameters_to_vector(bundled.parameters()), torch.nn.utils.parameters_to_vector(
        trained.parameters())
    # one PPO update moves the weights a little; a fresh initialisation would be as far as the weights' own norm
    assert 0 < (t - b).norm() / b.norm() < 0.05
    assert io.load_json(run / "timing.json")["runs"][0]["init_from"] == "breakout"
    # the run's optimizer is fresh: its step count is one update's minibatches, not the bundled run's
    assert io.load_json(run / "checkpoint" / "state.json")["update"] == 1
    # a bundle of the run counts the bundled agent's frames and names where it started
    bundle = tmp_path / "bundle"
    assert main(["agents", "evaluate", str(run), "--out", str(tmp_path / "eval"), "--bundle", str(bundle),
                 *QUICK]) == 0
    frames = bundled.metadata["frames"] if "frames" in bundled.metadata else bundled.metadata["global_step"]
    assert load_agent(bundle).metadata["frames"] == frames + 128
    readme = (bundle / "README.md").read_text()
    assert f"({frames:,} of them by the agent this run started from, `breakout`)" in readme
    # ... and carries how that agent was made: the bundled breakout README, its headings one level down
    started_from = readme.split("## The agent this run started from", 1)[1]
    assert "## Bundled agent: breakout" in started_from and "mean return" in started_from


def test_init_from_an_agent_of_another_game_is_refused(tmp_path, capsys):
    code = main(["agents", "train", "breakout", "--out", str(tmp_path / "r"), *QUICK, "--init-from", "freeway"])
    assert code == 2
    assert "init_from" in capsys.readouterr().err


def test_evaluate_writes_the_table_and_a_loadable_float16_bundle(tmp_path, capsys):
    out, bundle = tmp_path / "eval", tmp_path / "bundle"
    assert main(["agents", "evaluate", "breakout", "--out", str(out), "--bundle", str(bundle), *QUICK]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    ev = result["evaluation"]
    assert ev["env/agent"]["episodes"] == 4 and ev["env/random"]["episodes"] == 4
    assert ev["env/agent"]["mean_return"] > ev["env/random"]["mean_return"]   # a trained agent vs random keys
    assert "| env | agent | 4 |" in (out / "evaluation.md").read_text()
    agent = load_agent(bundle)
    assert agent.metadata["evaluation"] == ev
    assert result["fp16_max_logit_diff"] < 1e-2
    readme = (bundle / "README.md").read_text()
    assert "xrl agents evaluate breakout" in readme and "mean return" in readme
    assert (bundle / "agent.safetensors").stat().st_size < 0.6 * 4 * sum(p.numel() for p in agent.parameters())
    # bundling again into the same folder replaces it in one transaction: the README is in the new manifest
    (bundle / "notes.txt").write_text("mine")
    assert main(["agents", "evaluate", "breakout", "--out", str(out), "--bundle", str(bundle), *QUICK]) == 0
    again = load_agent(bundle).metadata["evaluation"]
    assert again["env/agent"]["mean_return"] == ev["env/agent"]["mean_return"]   # same seed, same episodes
    assert (bundle / "notes.txt").read_text() == "mine"
    assert "README.md" in io.load_json(bundle / "manifest.json")["files"]
