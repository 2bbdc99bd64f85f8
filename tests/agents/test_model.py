"""IMPALA CNN: seed 003's layer names, shapes for CoinRun and MinAtar, input checks, save/load."""
import numpy as np
import pytest
import torch

from xrl.agents import ImpalaCNN, load_agent, save_agent

SEED_003_LAYERS = (
    "embedder, embedder_block1, embedder_block1_conv, embedder_block1_res1, embedder_block1_res1_conv1, "
    "embedder_block1_res1_conv2, embedder_block1_res2, embedder_block1_res2_conv1, embedder_block1_res2_conv2, "
    "embedder_block2, embedder_block2_conv, embedder_block2_res1, embedder_block2_res1_conv1, "
    "embedder_block2_res1_conv2, embedder_block2_res2, embedder_block2_res2_conv1, embedder_block2_res2_conv2, "
    "embedder_block3, embedder_block3_conv, embedder_block3_res1, embedder_block3_res1_conv1, "
    "embedder_block3_res1_conv2, embedder_block3_res2, embedder_block3_res2_conv1, embedder_block3_res2_conv2, "
    "embedder_fc, embedder_relu_after_convs, fc_policy, fc_value").split(", ")


def test_layer_names_are_seed_003s():
    model = ImpalaCNN((3, 64, 64), 15)
    names = [n.replace(".", "_") for n, _ in model.named_modules() if n]
    assert names == SEED_003_LAYERS
    assert isinstance(model.embedder.relu_after_convs, torch.nn.ReLU)


@pytest.mark.parametrize("shape,hw", [((3, 64, 64), (8, 8)), ((7, 10, 10), (2, 2)), ((2, 10, 10), (2, 2))])
def test_shapes(shape, hw):
    model = ImpalaCNN(shape, 5, channels=(8, 16, 16), fc_dim=32)
    seen = {}
    h = model.embedder.relu_after_convs.register_forward_hook(lambda m, i, o: seen.setdefault("a", o))
    logits, value = model(torch.rand(4, *shape))
    h.remove()
    assert logits.shape == (4, 5) and value.shape == (4,) and seen["a"].shape == (4, 16, *hw)


def test_uint8_frames_are_scaled():
    model = ImpalaCNN((3, 64, 64), 15, channels=(4, 8, 8), fc_dim=16)
    frames = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    a, _ = model(frames)
    b, _ = model(frames.float() / 255)
    torch.testing.assert_close(a, b)


def test_wrong_observation_shape_says_what_is_expected():
    model = ImpalaCNN((3, 64, 64), 15, channels=(4, 8, 8), fc_dim=16)
    with pytest.raises(ValueError, match=r"obs: expected a batch of shape \[B, 3, 64, 64\].*channels-last"):
        model(torch.zeros(2, 64, 64, 3))
    with pytest.raises(ValueError, match=r"add a batch dimension"):
        model(torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match=r"expected a batch of shape \[B, 7, 10, 10\].*got shape \(1, 4, 10, 10\)"):
        ImpalaCNN((7, 10, 10), 3)(torch.zeros(1, 4, 10, 10))


def test_save_load_round_trip_and_fp16(tmp_path):
    model = ImpalaCNN((4, 10, 10), 3, channels=(4, 8, 8), fc_dim=16, action_names=["NOOP", "LEFT", "RIGHT"])
    x = torch.rand(5, 4, 10, 10)
    save_agent(tmp_path / "a", model, {"env_id": "breakout"})
    loaded = load_agent(tmp_path / "a")
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert loaded.action_names == ["NOOP", "LEFT", "RIGHT"] and loaded.metadata == {"env_id": "breakout"}
    assert not loaded.training
    save_agent(tmp_path / "h", model, half=True)
    half = load_agent(tmp_path / "h")
    assert half.fc_value.weight.dtype == torch.float32
    torch.testing.assert_close(half(x)[0], model(x)[0], atol=1e-2, rtol=0)


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path):
    model = ImpalaCNN((4, 10, 10), 3, channels=(4, 8, 8), fc_dim=16)
    save_agent(tmp_path, model)
    (tmp_path / "agent.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="'agent.safetensors' differs from the save's manifest.json"):
        load_agent(tmp_path)
    (tmp_path / "manifest.json").unlink()             # a save from before manifests: the file itself is checked
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_agent(tmp_path)
    save_agent(tmp_path, ImpalaCNN((4, 10, 10), 3, channels=(4, 8, 8), fc_dim=16))
    (tmp_path / "agent.json").write_text("{not json")
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(ValueError, match="corrupt JSON"):
        load_agent(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_agent(tmp_path / "nowhere")


def test_mismatched_checkpoint_names_the_keys(tmp_path):
    from xrl import io

    save_agent(tmp_path, ImpalaCNN((4, 10, 10), 3, channels=(4, 8, 8), fc_dim=16))
    cfg = io.load_json(tmp_path / "agent.json")
    cfg["model"]["fc_dim"] = 32
    io.save_json(tmp_path / "agent.json", cfg)
    (tmp_path / "manifest.json").unlink()             # edited by hand: the manifest would refuse it first
    with pytest.raises(ValueError, match="shape mismatches.*embedder.fc.weight"):
        load_agent(tmp_path)
