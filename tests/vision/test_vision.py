"""xrl.vision on a tiny IMPALA agent: activations, attributions, LayerNMF, visualizations, editing, rollouts."""
import numpy as np
import pytest
import torch
from torch import nn

from xrl.hooks import capture
from xrl.vision import (LayerNMF, ParameterEditor, argmax_nd, compare_rollouts, get_acts, get_attr, get_var,
                        project_out_direction, receptive_field)


def test_get_acts_shapes_kinds_and_batching(tiny_agent, board_obs):
    a = get_acts(tiny_agent, "embedder.block1", board_obs)
    b = get_acts(tiny_agent, "embedder_block1", board_obs, batch_size=5)
    assert isinstance(a, np.ndarray) and a.shape == (48, 4, 5, 5)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    v = get_acts(tiny_agent, "fc_value", board_obs[:8])
    assert v.shape == (8,) and [f"{x:.3f}" for x in v]
    t = get_acts(tiny_agent, "embedder.relu_after_convs", torch.from_numpy(board_obs[:4]))
    assert isinstance(t, torch.Tensor) and t.shape == (4, 8, 2, 2)
    np.testing.assert_allclose(v, tiny_agent(torch.from_numpy(board_obs[:8]))[1].detach().numpy(), rtol=1e-5)


def test_wrong_observation_shape_and_unknown_layer(tiny_agent, board_obs):
    with pytest.raises(ValueError, match="channels-last"):
        get_acts(tiny_agent, "embedder.block1", board_obs.transpose(0, 2, 3, 1))
    with pytest.raises(ValueError, match="did you mean"):
        get_acts(tiny_agent, "embedder.blok1", board_obs)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        get_attr(tiny_agent, "fc_value", "embedder.block1", board_obs[:, :2])


def test_get_attr_completeness_on_agent(tiny_agent, board_obs):
    obs = board_obs[:6]
    # ReLU/max-pool kinks make the right Riemann sum converge as 1/n: 100 steps ~4% off here, 1000 steps ~0.3%
    attr = get_attr(tiny_agent, "fc_value", "embedder.block2", obs, integrate_steps=1000, batch_size=2048)
    from xrl.hooks import patch
    x = torch.from_numpy(obs)
    with torch.no_grad(), patch(tiny_agent, "embedder.block2", lambda a: torch.zeros_like(a)):
        v0 = tiny_agent(x)[1].numpy()
    v1 = get_acts(tiny_agent, "fc_value", obs)
    total = attr.reshape(6, -1).sum(1)
    assert np.abs(total - (v1 - v0)).max() <= 0.01 * np.abs(v1 - v0).max()


def test_receptive_field_of_known_stack():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(3, 2, padding=1), nn.Conv2d(2, 2, 3, padding=1))
    rf = receptive_field(net, "2", (1, 16, 16))
    assert rf.measured and rf.stride == (2.0, 2.0) and rf.size == (9, 9)
    assert rf.offset == (0.5, 0.5)  # unit 0 sits over input pixel 0 (padding is symmetric)


def test_argmax_nd_respects_max_rep():
    x = np.zeros((4, 3))
    x[:, 0] = [5, 4, 3, 2]  # every slot prefers candidate 0
    x[:, 1] = 1
    (plain,) = argmax_nd(x, axes=[1])
    assert (plain == 0).all()
    (limited,) = argmax_nd(x, axes=[1], max_rep=2)
    assert list(limited) == [0, 0, 1, 1]


def test_layer_nmf_fits_and_visualizes(tiny_agent, board_obs):
    nmf = LayerNMF(tiny_agent, "embedder.block1", board_obs, features=3, attr_layer_name="fc_value",
                   attr_opts={"integrate_steps": 4})
    assert nmf.channel_dirs.shape == (3, 4) and (nmf.channel_dirs >= 0).all()
    assert nmf.acts_reduced.shape == (48, 5, 5, 3)
    attr = get_attr(tiny_agent, "fc_value", "embedder.block1", board_obs[:5], integrate_steps=4)
    red = nmf.transform(np.maximum(attr, 0))
    assert red.shape == (5, 5, 5, 3) and (red >= 0).all()
    thumb, idx = nmf.vis_dataset_thumbnail(0, num_mult=2, expand_mult=2)
    assert thumb.shape[0] == 4 and np.array(idx).shape == (2, 2)
    assert thumb[3].max() == pytest.approx(1.0) and thumb[3].min() >= 0
    full, idx = nmf.vis_dataset(1, subdiv_mult=1, expand_mult=1)
    assert full.shape == (4, 10, 10) and np.array(idx).shape == (5, 5)
    # activations mode on a ReLU layer
    nmf2 = LayerNMF(tiny_agent, "embedder.relu_after_convs", board_obs, features=2)
    assert nmf2.acts_reduced.shape == (48, 2, 2, 2)
    signed = LayerNMF(tiny_agent, "embedder.block1", board_obs, features=2)    # residual sums: +/- parts
    assert signed.channel_dirs.shape == (2, 4) and signed.acts_reduced.min() < 0


def test_vis_traditional_raises_the_direction(tiny_agent, board_obs):
    nmf = LayerNMF(tiny_agent, "embedder.relu_after_convs", board_obs, features=2)
    imgs = nmf.vis_traditional(steps=40, lr=0.1)
    assert imgs.shape == (2, 3, 10, 10) and imgs.min() >= 0 and imgs.max() <= 1
    acts = get_acts(tiny_agent, "embedder.relu_after_convs", imgs)                     # [2, 8, 2, 2]
    score = [float(acts[i, :, 1, 1] @ nmf.channel_dirs[i]) for i in range(2)]
    base = get_acts(tiny_agent, "embedder.relu_after_convs", np.full_like(imgs, 0.5))
    base_score = [float(base[i, :, 1, 1] @ nmf.channel_dirs[i]) for i in range(2)]
    assert all(s > b for s, b in zip(score, base_score))


def test_edit_removes_direction_exactly(tiny_agent, board_obs):
    rng = np.random.default_rng(0)
    d = rng.random(4).astype(np.float32)
    edited = project_out_direction(tiny_agent, "embedder.block1", d, example_obs=board_obs)
    assert edited.edit_info["next_layer"] == "embedder.block2.conv"
    W = edited.embedder.block2.conv.weight.detach().numpy()                 # [O, I, kh, kw]
    dn = d / np.linalg.norm(d)
    np.testing.assert_allclose(np.einsum("oihw,i->ohw", W, dn), 0, atol=1e-6)
    # the edited conv sees the activations with the direction projected out: conv'(a) == conv(a - d d^T a)
    x = torch.from_numpy(board_obs[:4])
    with torch.no_grad(), capture(tiny_agent, "embedder.block1") as got:
        tiny_agent(x)
        a = got["embedder.block1"]
        dt = torch.from_numpy(dn).view(1, -1, 1, 1)
        proj = a - dt * (dt * a).sum(1, keepdim=True)
        assert float((proj * dt).sum(1).abs().max()) < 1e-5                    # projection onto d is 0
        torch.testing.assert_close(edited.embedder.block2.conv(a), tiny_agent.embedder.block2.conv(proj),
                                   rtol=1e-5, atol=1e-5)
    # the original is untouched, and the seed's ParameterEditor formula gives the same kernel
    assert not np.allclose(get_var(tiny_agent, "embedder.block2.conv.weight"), W)
    import copy
    other = copy.deepcopy(tiny_agent)
    editor = ParameterEditor(other)
    kernel = editor["embedder_block2_conv_weight"]                            # [kh, kw, in, out]
    saw_dir = (d / np.linalg.norm(d))[None, None, :, None]
    editor["embedder_block2_conv_weight"] = kernel - saw_dir * (saw_dir * kernel).sum(axis=-2, keepdims=True)
    np.testing.assert_allclose(get_var(other, "embedder.block2.conv"), W, atol=1e-6)
    with pytest.raises(ValueError, match="did you mean"):
        get_var(tiny_agent, "embedder.block2.conv.wieght")


def test_compare_rollouts_paired_and_deterministic(tiny_agent):
    env_agent = tiny_agent.__class__((7, 10, 10), num_actions=3, channels=(4, 8, 8), fc_dim=16).eval()
    res = compare_rollouts({"a": env_agent, "b": env_agent}, "freeway", n_episodes=2, max_steps=30, seed=3)
    assert res["a"] == res["b"]
    assert set(res["a"]) >= {"return_mean", "length_mean", "events_mean"}
    assert res["a"]["length_mean"] == 30


def test_uint8_frames_are_passed_to_the_model_unscaled(tiny_agent, board_obs):
    frames = (board_obs[:4] * 255).astype(np.uint8)                     # the model scales uint8 by 1/255 itself
    np.testing.assert_allclose(get_acts(tiny_agent, "fc_value", frames), get_acts(tiny_agent, "fc_value",
                               board_obs[:4]), rtol=1e-5, atol=1e-6)
    g = get_attr(tiny_agent, "fc_value", "input", frames)
    assert g.dtype == np.float32 and g.shape == (4, 3, 10, 10)
