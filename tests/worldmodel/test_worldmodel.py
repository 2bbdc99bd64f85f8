"""Tests of xrl.worldmodel on tiny models (CPU, seconds)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xrl.envs import make_minatar
from xrl.worldmodel import (DreamerAgent, Evaluator, MinAtarConfig, RSSMDiscState, cpu_config, kl_balance_loss,
                            straight_through_sample)
from xrl.worldmodel.explain import explain_latents, relate_components
from xrl.worldmodel.train import ReplayBuffer, Trainer, lambda_returns, train

TINY = dict(obs_shape=(2, 10, 10), action_size=3, embedding_size=16, rssm_node_size=16,
            rssm_info={"deter_size": 12, "category_size": 4, "class_size": 5}, node_size=16, layers=2, conv_depth=4,
            batch_size=3, seq_len=6, horizon=4)


def tiny_agent(seed: int = 0, **kw) -> DreamerAgent:
    torch.manual_seed(seed)
    return DreamerAgent(MinAtarConfig(**{**TINY, **kw}))


def make_env():
    return make_minatar("freeway", pomdp=True, one_hot_actions=True)


def fixed_batch(cfg: MinAtarConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    env, rng = make_env(), np.random.default_rng(seed)
    buf = ReplayBuffer(200, cfg.obs_shape, cfg.action_size)
    obs, _ = env.reset(seed=seed)
    buf.add(obs, np.zeros(3, np.float32), 0.0, False, True)
    for _ in range(100):
        a = np.eye(3, dtype=np.float32)[rng.integers(3)]
        obs, r, term, trunc, _ = env.step(a)
        buf.add(obs, a, r, term, False)
    return buf.sample(cfg.batch_size, cfg.seq_len, np.random.default_rng(1), "cpu")


# -- RSSM ------------------------------------------------------------------------------------------------------------
def test_rssm_shapes_and_state_type():
    agent = tiny_agent()
    rssm = agent.RSSM
    s0 = rssm._init_rssm_state(batch_size=2)
    assert isinstance(s0, RSSMDiscState) and s0._fields == ("logit", "stoch", "deter")
    assert s0.logit.shape == (2, 20) and s0.stoch.shape == (2, 20) and s0.deter.shape == (2, 12)
    embed = agent.ObsEncoder(torch.zeros(2, 2, 10, 10))
    assert embed.shape == (2, 16)
    prior, post = rssm.rssm_observe(embed, torch.zeros(2, 3), True, s0)
    assert prior.logit.shape == post.logit.shape == (2, 20)
    assert torch.equal(prior.deter, post.deter)
    assert rssm.get_model_state(post).shape == (2, 32)
    action, dist = agent.ActionModel(rssm.get_model_state(post))
    assert action.shape == (2, 3) and torch.allclose(action.sum(-1), torch.ones(2))
    assert isinstance(dist, torch.distributions.OneHotCategorical)


def test_straight_through_sampling_is_one_hot_with_gradient():
    logit = torch.randn(7, 4 * 5, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    s = straight_through_sample(logit, 4, 5, g)
    blocks = s.detach().reshape(7, 4, 5)
    assert torch.allclose(blocks.sum(-1), torch.ones(7, 4))
    assert set(blocks.unique().tolist()) <= {0.0, 1.0}
    w = torch.randn(20)
    (s * w).sum().backward()
    assert logit.grad is not None and logit.grad.abs().sum() > 0
    # the gradient is that of the softmax probabilities
    logit2 = logit.detach().clone().requires_grad_(True)
    (torch.softmax(logit2.reshape(7, 4, 5), -1).reshape(7, 20) * w).sum().backward()
    assert torch.allclose(logit.grad, logit2.grad, atol=1e-6)
    # same generator seed, same sample
    s2 = straight_through_sample(logit.detach(), 4, 5, torch.Generator().manual_seed(0))
    assert torch.equal(s.detach(), s2)


def test_kl_balancing_matches_hand_computation():
    prior = torch.tensor([[1.0, 0.0, -1.0, 0.5, 0.5, 0.0]], requires_grad=True)  # C=2, K=3
    post = torch.tensor([[0.0, 2.0, 0.0, -1.0, 1.0, 0.0]], requires_grad=True)
    p = np.exp(post.detach().numpy().reshape(2, 3))
    p /= p.sum(-1, keepdims=True)
    q = np.exp(prior.detach().numpy().reshape(2, 3))
    q /= q.sum(-1, keepdims=True)
    kl = float((p * np.log(p / q)).sum())
    alpha = 0.8
    loss = kl_balance_loss(prior, post, 2, 3, alpha=alpha)
    assert loss.item() == pytest.approx(kl, rel=1e-5)  # both terms have the same value
    loss.backward()
    # gradients are split: the prior term is scaled by alpha, the posterior term by 1 - alpha
    p1, q1 = prior.detach().clone().requires_grad_(True), post.detach().clone().requires_grad_(True)
    kl_balance_loss(p1, q1, 2, 3, alpha=1.0).backward()
    assert torch.allclose(prior.grad, alpha * p1.grad, atol=1e-6)
    assert torch.count_nonzero(q1.grad) == 0
    p0, q0 = prior.detach().clone().requires_grad_(True), post.detach().clone().requires_grad_(True)
    kl_balance_loss(p0, q0, 2, 3, alpha=0.0).backward()
    assert torch.allclose(post.grad, (1 - alpha) * q0.grad, atol=1e-6)
    assert torch.count_nonzero(p0.grad) == 0
    assert kl_balance_loss(prior, post, 2, 3, free_nats=10.0).item() == pytest.approx(10.0)


def test_lambda_returns_by_hand():
    r = torch.tensor([0.0, 1.0, 2.0]).view(3, 1, 1)
    v = torch.tensor([0.5, 1.5, 3.0]).view(3, 1, 1)
    d = torch.tensor([0.9, 0.9, 0.8]).view(3, 1, 1)
    lam = 0.5
    R2 = 3.0
    R1 = 2.0 + 0.8 * ((1 - lam) * 3.0 + lam * R2)
    R0 = 1.0 + 0.9 * ((1 - lam) * 1.5 + lam * R1)
    out = lambda_returns(r, v, d, lam).flatten().tolist()
    assert out == pytest.approx([R0, R1])


def test_imagination_rollout_shapes():
    agent = tiny_agent()
    tr = Trainer(agent, agent.config)
    start = agent.RSSM._init_rssm_state(5)
    feats, actions = tr.imagine(start)
    assert feats.shape == (5, 5, 32)  # [H+1, N, D + C*K]
    assert actions.shape == (4, 5, 3)
    assert torch.allclose(actions.sum(-1), torch.ones(4, 5))
    states, logp, ent = agent.RSSM.rollout_imagination(4, agent.ActionModel, start)
    assert states.stoch.shape == (4, 5, 20) and logp.shape == (4, 5) and ent.shape == (4, 5)


def test_training_step_lowers_world_model_loss():
    agent = tiny_agent(lr_model=3e-3)
    agent.set_generator(torch.Generator().manual_seed(0))
    tr = Trainer(agent, agent.config)
    batch = fixed_batch(agent.config)
    before = tr.world_model_loss(batch)[0].item()
    for _ in range(15):
        metrics = tr.train_batch(batch)
    after = tr.world_model_loss(batch)[0].item()
    assert after < before
    assert all(np.isfinite(v) for v in metrics.values())
    assert {"losses/model", "losses/kl", "losses/actor", "losses/value"} <= set(metrics)


# -- errors ----------------------------------------------------------------------------------------------------------
def test_bad_inputs_give_clear_errors():
    agent = tiny_agent()
    s0 = agent.RSSM._init_rssm_state(1)
    with pytest.raises(ValueError, match="prev_action: expected a one-hot tensor \\[..., 3\\]"):
        agent.RSSM.rssm_observe(torch.zeros(1, 16), torch.zeros(1, 4), True, s0)
    with pytest.raises(ValueError, match="obs: expected a tensor \\[..., 2, 10, 10\\]"):
        agent.ObsEncoder(torch.zeros(1, 7, 10, 10))
    with pytest.raises(ValueError, match="rank: expected an int in \\[1, 5\\]"):
        explain_latents(agent, make_env(), batch=1, seq_len=2, rank=6)
    with pytest.raises(ValueError, match="env: expected observations of shape \\(2, 10, 10\\)"):
        explain_latents(agent, make_minatar("freeway", one_hot_actions=True), batch=1, seq_len=2, rank=2)
    with pytest.raises(ValueError, match="action_size"):
        explain_latents(tiny_agent(action_size=4), make_env(), batch=1, seq_len=2, rank=2)
    with pytest.raises(TypeError, match="env: expected a gymnasium env with one-hot actions"):
        explain_latents(agent, "freeway", batch=1, seq_len=2, rank=2)
    not_one_hot = make_minatar("freeway", pomdp=True)
    with pytest.raises(ValueError, match=r"env: expected one-hot actions.*one_hot_actions=True"):
        explain_latents(agent, not_one_hot, batch=1, seq_len=2, rank=2)
    from xrl.worldmodel import evaluate as wm_evaluate
    from xrl.worldmodel import plot_latents
    with pytest.raises(ValueError, match=r"env: expected one-hot actions"):
        wm_evaluate(agent, lambda: make_minatar("freeway", pomdp=True), episodes=1, progress=False)
    with pytest.raises(TypeError, match="agent: expected a DreamerAgent or a loaded Evaluator"):
        wm_evaluate(nn.Linear(2, 2), make_env, episodes=1, progress=False)
    with pytest.raises(TypeError, match="ex: expected a LatentExplanation"):
        plot_latents({"probs": 1})
    with pytest.raises(ValueError, match="config: unknown key"):
        MinAtarConfig.from_dict({"batch_sise": 3})
    with pytest.raises(ValueError, match="seed_action_probs"):
        MinAtarConfig(seed_action_probs=(0.5, 0.5))


# -- explanation -----------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:NMF. maximum number of iterations")
def test_explain_latents_shapes_no_nan_and_determinism(tmp_path):
    agent = tiny_agent()
    ex = explain_latents(agent, make_env(), batch=2, seq_len=6, rank=3, seed=3, top_k=4)
    B, L, C, K, r = 2, 6, 4, 5, 3
    assert ex.shape == (B, L, C, K)
    assert ex.probs.shape == ex.stoch.shape == (B, L, C, K)
    assert ex.obs.shape == (B, L, 2, 10, 10) and ex.objects.shape == (B, L, 7, 10, 10)
    assert ex.W.shape == (B * L * C, r) and ex.H.shape == (r, K)
    assert ex.activity.shape == (B, L, C) and ex.step_importance.shape == (B, L)
    assert ex.component_strength.shape == (B, L, r) and ex.top_steps.shape == (B, 4)
    assert ex.actions.shape == ex.has_effect.shape == ex.rewards.shape == (B, L)
    for arr in (ex.probs, ex.activity, ex.W, ex.H, ex.step_importance, ex.entropy):
        assert np.isfinite(arr).all()
    assert ex.activity.max() == pytest.approx(1.0) and ex.activity.min() >= 0
    assert ex.action_names == ["NOOP", "UP", "DOWN"]
    assert np.all(np.diff(ex.step_importance[0, ex.top_steps[0]]) <= 0)
    ex2 = explain_latents(agent, make_env, batch=2, seq_len=6, rank=3, seed=3, top_k=4)
    np.testing.assert_array_equal(ex.logits, ex2.logits)
    np.testing.assert_array_equal(ex.actions, ex2.actions)
    gt = relate_components(ex)
    assert gt.corr.shape == (r, len(gt.feature_names)) and np.isfinite(gt.corr).all()
    assert "freeway:chicken_height" in gt.feature_names and len(gt.best) == r

    from xrl.worldmodel.plot import plot_latents, plot_top_observations
    figs = plot_latents(ex, rollout=1, rows_per_page=4, out_dir=tmp_path)
    assert len(figs) == 2 and all((tmp_path / f"latents_rollout1_page{p}.png").is_file() for p in range(2))
    fig = plot_top_observations(ex, tmp_path / "top.png")
    assert (tmp_path / "top.png").is_file()
    import matplotlib.pyplot as plt
    for f in figs + [fig]:
        plt.close(f)


# -- checkpoints -----------------------------------------------------------------------------------------------------
def test_checkpoint_round_trip(tmp_path):
    agent = tiny_agent(seed=1)
    agent.save(tmp_path / "ck", meta={"frames": 3})
    loaded = DreamerAgent.load(tmp_path / "ck")
    assert loaded.config.to_dict() == agent.config.to_dict() and loaded.meta == {"frames": 3}
    for k, v in agent.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    x = torch.rand(2, 2, 10, 10)
    assert torch.equal(agent.ObsEncoder(x), loaded.ObsEncoder(x))
    ev = Evaluator(None, "cpu").load_model(None, tmp_path / "ck")
    assert ev.action_size == 3 and ev.RSSM._init_rssm_state(batch_size=1).deter.shape == (1, 12)
    other = tiny_agent(rssm_info={"deter_size": 8, "category_size": 4, "class_size": 5})
    other.save(tmp_path / "bad")
    import json
    doc = json.loads((tmp_path / "ck" / "agent.json").read_text())
    (tmp_path / "bad" / "agent.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="'agent.json' differs from the save's manifest.json"):
        DreamerAgent.load(tmp_path / "bad")
    (tmp_path / "bad" / "manifest.json").unlink()   # as a save from before manifests: the weights are checked
    with pytest.raises(ValueError, match="shape mismatches"):
        DreamerAgent.load(tmp_path / "bad")


class _PublicRSSM(nn.Module):
    """The public DreamerV2 RSSM's module tree (attribute names and layer order), re-declared for the test."""

    def __init__(self, A, node, E, D, S):
        super().__init__()
        self.rnn = nn.GRUCell(D, D)
        self.fc_embed_state_action = nn.Sequential(nn.Linear(S + A, D), nn.ELU())
        self.fc_prior = nn.Sequential(nn.Linear(D, node), nn.ELU(), nn.Linear(node, S))
        self.fc_posterior = nn.Sequential(nn.Linear(D + E, node), nn.ELU(), nn.Linear(node, S))


class _PublicEncoder(nn.Module):
    def __init__(self, c, d, k, E):
        super().__init__()
        self.convolutions = nn.Sequential(nn.Conv2d(c, d, k), nn.ELU(), nn.Conv2d(d, 2 * d, k), nn.ELU(),
                                          nn.Conv2d(2 * d, 4 * d, k), nn.ELU())
        self.fc_1 = nn.Linear(4 * d * 4 * 4, E)


def _public_dense(inp, out, node, layers):
    mods = [nn.Linear(inp, node), nn.ELU()]
    for _ in range(layers - 1):
        mods += [nn.Linear(node, node), nn.ELU()]
    m = nn.Module()
    m.model = nn.Sequential(*mods, nn.Linear(node, out))
    return m


def test_dreamerv2_pth_loader(tmp_path):
    torch.manual_seed(0)
    cfg = MinAtarConfig(**TINY)
    S, D = 20, 12
    rssm = _PublicRSSM(3, 16, 16, D, S)
    enc = _PublicEncoder(2, 4, 3, 16)
    actor = _public_dense(D + S, 3, 16, 2)
    saved = {"RSSM": rssm.state_dict(), "ObsEncoder": enc.state_dict(), "ActionModel": actor.state_dict(),
             "RewardDecoder": _public_dense(D + S, 1, 16, 2).state_dict()}
    torch.save(saved, tmp_path / "models_best.pth")
    ev = Evaluator(cfg, "cpu").load_model(cfg, tmp_path / "models_best.pth")
    x = torch.rand(2, 2, 10, 10)
    with torch.no_grad():
        ref = enc.fc_1(enc.convolutions(x).reshape(2, -1))
        assert torch.allclose(ev.ObsEncoder(x), ref)
        h = torch.rand(2, D)
        assert torch.allclose(ev.RSSM.fc_prior(h), rssm.fc_prior(h))
        f = torch.rand(2, D + S)
        assert torch.allclose(ev.ActionModel.model(f), actor.model(f))
    assert ev.agent.meta["loaded"] == ["RSSM", "ObsEncoder", "RewardDecoder", "ActionModel"]
    # missing module and wrong shapes are clear errors
    torch.save({"RSSM": rssm.state_dict()}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="missing state dicts"):
        DreamerAgent.from_dreamerv2_pth(tmp_path / "partial.pth", cfg)
    big = MinAtarConfig(**{**TINY, "embedding_size": 32})
    with pytest.raises(ValueError, match="shape mismatches"):
        DreamerAgent.from_dreamerv2_pth(tmp_path / "models_best.pth", big)
    # arbitrary pickled objects are refused (weights_only=True)
    torch.save({"RSSM": rssm.state_dict(), "x": _Unsafe()}, tmp_path / "unsafe.pth")
    with pytest.raises(ValueError, match="weights_only"):
        DreamerAgent.from_dreamerv2_pth(tmp_path / "unsafe.pth", cfg)


class _Unsafe:
    pass


def global_state():
    return torch.random.get_rng_state(), np.random.get_state()[1].copy(), torch.get_num_threads()


def assert_same_global_state(before):
    assert torch.equal(torch.random.get_rng_state(), before[0]), "the global torch RNG was consumed"
    assert np.array_equal(np.random.get_state()[1], before[1]), "numpy's global RNG was consumed"
    assert torch.get_num_threads() == before[2], "torch's thread count was changed"


def test_loading_and_explaining_leave_the_global_rngs_alone(tmp_path):
    from xrl.worldmodel import load_pretrained  # exported with explain_latents and plot_latents

    tiny_agent(seed=2).save(tmp_path / "ck")
    before = global_state()
    agent = DreamerAgent.load(tmp_path / "ck")
    load_pretrained("freeway_pomdp")
    Evaluator(None).load_model(None, tmp_path / "ck")
    explain_latents(agent, make_env(), batch=1, seq_len=3, rank=2, progress=False)
    assert_same_global_state(before)


def test_train_resume_and_cpu_config(tmp_path):
    assert cpu_config().rssm_info.category_size == 20 and MinAtarConfig().batch_size == 50
    cfg = MinAtarConfig(**{**TINY, "seed_steps": 30, "train_steps": 40, "train_every": 10, "save_every": 20,
                           "collect_intervals": 1,
                           "slow_target_update": 20})
    before = global_state()
    train(cfg, tmp_path / "run", log_every=1000, progress=False)
    assert_same_global_state(before)  # seeded through private generators; no torch.set_num_threads
    import json
    st = json.loads((tmp_path / "run" / "checkpoint" / "train_state.json").read_text())
    assert st["counters"]["frame"] == 70 and st["counters"]["updates"] == 5  # frames 30, 40, ..., 70
    cfg2 = MinAtarConfig(**{**cfg.to_dict(), "train_steps": 60})
    train(cfg2, tmp_path / "run", resume=True, log_every=1000, progress=False)
    st = json.loads((tmp_path / "run" / "checkpoint" / "train_state.json").read_text())
    assert st["counters"]["frame"] == 90 and st["counters"]["updates"] == 7
    agent = DreamerAgent.load(tmp_path / "run" / "checkpoint")
    assert agent.meta["frames"] == 90


def test_seed_002_loop_ports_line_by_line(tmp_path):
    tiny_agent().save(tmp_path / "ck")
    env = make_minatar("freeway", pomdp=True, one_hot_actions=True)
    config = MinAtarConfig(**TINY)
    evaluator = Evaluator(config, "cpu")
    evaluator.load_model(evaluator.config, tmp_path / "ck")
    torch.set_grad_enabled(False)
    try:
        obs, info = env.reset(seed=212)
        done, history = False, []
        prev_rssm_state = evaluator.RSSM._init_rssm_state(batch_size=1)
        prev_action = torch.zeros(1, evaluator.action_size).to(evaluator.device)
        for _ in range(3):
            embed = evaluator.ObsEncoder(torch.tensor(obs, dtype=torch.float32).unsqueeze(0).to(evaluator.device))
            _, posterior_rssm_state = evaluator.RSSM.rssm_observe(embed, prev_action, not done, prev_rssm_state)
            model_state = evaluator.RSSM.get_model_state(posterior_rssm_state)
            action, _ = evaluator.ActionModel(model_state)
            C, K = config.rssm_info.category_size, config.rssm_info.class_size
            history.append((obs, RSSMDiscState(posterior_rssm_state.logit.squeeze(0).reshape(C, K),
                                               posterior_rssm_state.stoch.squeeze(0).reshape(C, K),
                                               posterior_rssm_state.deter.squeeze(0)),
                            action.squeeze(0).numpy(), env.unwrapped.game.env.move_timer == 0))
            obs, reward, terminated, truncated, info = env.step(action.squeeze(0).numpy())
            done = terminated or truncated
            prev_rssm_state, prev_action = posterior_rssm_state, action
    finally:
        torch.set_grad_enabled(True)
    assert len(history) == 3 and history[0][1].logit.shape == (4, 5)


def _tiny_run_config(train_steps):
    return MinAtarConfig(**{**TINY, "seed_steps": 30, "train_steps": train_steps, "train_every": 10,
                            "save_every": 20, "collect_intervals": 1, "slow_target_update": 20})


def _folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_an_interrupted_checkpoint_leaves_exactly_the_previous_one(tmp_path, ctrl_c_at_write):
    from xrl import io

    run = tmp_path / "run"
    train(_tiny_run_config(40), run, log_every=1000, progress=False)
    before = _folder_bytes(run / "checkpoint")
    assert {"agent.safetensors", "agent.json", "train_state.safetensors", "train_state.json",
            "manifest.json"} == set(before)
    for at in range(1, 6):  # each file of the checkpoint, the manifest last
        with ctrl_c_at_write(at, only=".checkpoint.xrl-new-"):
            train(_tiny_run_config(60), run, resume=True, log_every=1000, progress=False)
        assert _folder_bytes(run / "checkpoint") == before, at    # the agent and its training state, untouched
    train(_tiny_run_config(60), run, resume=True, log_every=1000, progress=False)
    assert io.load_json(run / "checkpoint" / "train_state.json")["counters"]["frame"] == 90
    assert DreamerAgent.load(run / "checkpoint").meta["frames"] == 90


def test_runs_saved_in_the_old_layout_still_resume(tmp_path):
    """Before whole-directory checkpoints, train_state.* sat beside checkpoint/ and the optimiser keys were
    ``opt.<name>.<index>.<key>``: such a run resumes exactly as the same state in the new layout."""
    import shutil

    from xrl import io

    new, old = tmp_path / "new", tmp_path / "old"
    train(_tiny_run_config(40), new, log_every=1000, progress=False)
    shutil.copytree(new, old)
    for suffix in ("json", "safetensors"):
        shutil.move(old / "checkpoint" / f"train_state.{suffix}", old / f"train_state.{suffix}")
    (old / "checkpoint" / "manifest.json").unlink()
    tensors = io.load_tensors(old / "train_state.safetensors")
    renamed = {k.replace(".state.", ".", 1) if k.startswith("opt.") else k: v for k, v in tensors.items()}
    assert any(k.startswith("opt.model.0.") for k in renamed)
    io.save_tensors(old / "train_state.safetensors", renamed)
    a = train(_tiny_run_config(60), new, resume=True, log_every=1000, progress=False)
    b = train(_tiny_run_config(60), old, resume=True, log_every=1000, progress=False)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    assert (old / "checkpoint" / "train_state.json").is_file()  # rewritten in the new layout


def test_an_interrupted_agent_save_leaves_exactly_the_old_agent(tmp_path, ctrl_c_at_write):
    old, new = tiny_agent(seed=1), tiny_agent(seed=2)
    old.save(tmp_path / "ck", meta={"v": "old"})
    for at in (1, 2, 3):  # agent.safetensors, agent.json, manifest.json
        with ctrl_c_at_write(at):
            new.save(tmp_path / "ck", meta={"v": "new"})
        back = DreamerAgent.load(tmp_path / "ck")
        assert back.meta == {"v": "old"} and all(torch.equal(x, y) for x, y in
                                                 zip(back.state_dict().values(), old.state_dict().values()))
    new.save(tmp_path / "ck", meta={"v": "new"})
    assert DreamerAgent.load(tmp_path / "ck").meta == {"v": "new"}
