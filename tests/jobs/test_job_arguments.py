"""The job functions refuse bad arguments with the argument's name, the value and what is accepted."""
import pytest
import torch

from xrl.jobs import agents, cfrl_adult, cfrl_mnist, vision, worldmodel


def test_unknown_environment_lists_the_games():
    with pytest.raises(ValueError, match=r"env_id: expected a MinAtar game \(.*breakout.*\) or 'coinrun', got 'pong'"):
        agents.ppo_config("pong")


def test_unknown_agent_lists_the_bundled_names(tmp_path):
    with pytest.raises(ValueError, match=r"agent: expected a bundled agent name \(coinrun, breakout, freeway\)"):
        agents.resolve_agent(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match=r"agent: expected a bundled world model \(freeway_pomdp\)"):
        worldmodel.resolve_agent(str(tmp_path / "nothing"))


def test_a_run_folder_resolves_to_its_checkpoint(tmp_path):
    from xrl.agents import save_agent
    from xrl.pretrained import load_pretrained

    save_agent(tmp_path / "run" / "checkpoint", load_pretrained("breakout"), {"env_id": "breakout"})
    agent = agents.resolve_agent(tmp_path / "run")
    assert agent.metadata["env_id"] == "breakout" and agent.obs_shape == (4, 10, 10)


@pytest.mark.parametrize("call,match", [
    (lambda tmp: cfrl_mnist.run(tmp, train_steps=-1), "train_steps: expected a value >= 0"),
    (lambda tmp: cfrl_mnist.run(tmp, n_explain=5), "n_explain: expected a value >= 10"),
    (lambda tmp: cfrl_mnist.run(tmp, train_steps=0, save_models_to=tmp / "m"),
     "save_models_to: expected None unless retrain=True"),
    (lambda tmp: cfrl_mnist.run(tmp, accelerate="fast"), "accelerate: expected one of None, 'channels_last'"),
    (lambda tmp: cfrl_adult.run(tmp, ae_epochs=0), "ae_epochs: expected a value >= 1"),
    (lambda tmp: worldmodel.make_config("freeway", preset="fast"), "preset: expected 'cpu' or 'dreamerv2'"),
    (lambda tmp: worldmodel.make_config("freeway", frames=0), "frames: expected a value >= 1"),
    (lambda tmp: vision.walkthrough("breakout", tmp, features=0), "features: expected a value >= 1"),
    (lambda tmp: agents.train("breakout", tmp, total_timesteps=0), "total_timesteps: expected a value >= 1"),
    (lambda tmp: agents.evaluate("breakout", tmp, episodes=0), "episodes: expected a value >= 1"),
])
def test_bad_sizes_are_refused(tmp_path, call, match):
    with pytest.raises(ValueError, match=match):
        call(tmp_path)


@pytest.mark.parametrize("accelerate,runs", [("channels_last", "accelerated"), (None, "eager")])
def test_cfrl_mnist_runs_the_classifier_as_asked(tmp_path, accelerate, runs):
    metrics = cfrl_mnist.run(tmp_path, train_steps=12, n_explain=10, train_size=200, accelerate=accelerate,
                             progress=False)
    assert metrics["cfrl_fit"]["classifier_runs"] == runs
    assert 0 <= metrics["random_targets"]["validity"] <= 1


def test_worldmodel_config_presets():
    cpu, full = worldmodel.make_config("freeway"), worldmodel.make_config("freeway", preset="dreamerv2", frames=10)
    assert cpu.obs_shape == (2, 10, 10) and cpu.action_size == 3 and cpu.batch_size == 16
    assert full.batch_size == 50 and full.train_steps == 10
    assert worldmodel.make_config("breakout", pomdp=False).obs_shape == (4, 10, 10)


def test_jobs_leave_threads_and_the_global_rng_alone(tmp_path):
    threads, state = torch.get_num_threads(), torch.random.get_rng_state()
    worldmodel.explain("freeway_pomdp", tmp_path, batch=1, seq_len=4, rank=2, page_rollouts=0)
    agents.train("breakout", tmp_path / "run", total_timesteps=64, num_envs=2, num_steps=32, channels=(4, 8, 8),
                 fc_dim=16, progress=False)
    assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), state)
