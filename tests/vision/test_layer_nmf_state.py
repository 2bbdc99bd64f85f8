"""LayerNMF keeps: save/load round trip (also interrupted), the model check at load, the progress bar."""
import numpy as np
import pytest
import torch

from xrl.models.impala import ImpalaCNN
from xrl.vision import LayerNMF, get_attr


def test_save_load_round_trip_checks_the_model(tiny_agent, board_obs, tmp_path, capsys):
    nmf = LayerNMF(tiny_agent, "embedder.block1", board_obs, features=3, attr_layer_name="fc_value",
                   attr_opts={"integrate_steps": 4}, progress=True)
    assert "LayerNMF" in capsys.readouterr().err                    # the stage bar was shown
    nmf.save(tmp_path / "nmf")
    back = LayerNMF.load(tmp_path / "nmf", tiny_agent)
    for key in ("observations", "acts", "acts_reduced", "channel_dirs", "attrs"):
        np.testing.assert_array_equal(getattr(back, key), getattr(nmf, key), err_msg=key)
    assert back.receptive_field == nmf.receptive_field and back.layer == "embedder.block1"
    attr = get_attr(tiny_agent, "fc_value", "embedder.block1", board_obs[:4], integrate_steps=4)
    np.testing.assert_array_equal(back.transform(np.maximum(attr, 0)), nmf.transform(np.maximum(attr, 0)))
    np.testing.assert_array_equal(back.vis_dataset(1)[0], nmf.vis_dataset(1)[0])
    # another network (or changed weights) is refused: the directions would explain the wrong model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        other = ImpalaCNN((3, 10, 10), num_actions=3, channels=(4, 8, 8), fc_dim=16).eval()
    with pytest.raises(ValueError, match="model: expected the network this LayerNMF was fitted with"):
        LayerNMF.load(tmp_path / "nmf", other)
    assert LayerNMF.load(tmp_path / "nmf", other, check=False).features == 3
    raw = LayerNMF(tiny_agent, "embedder.relu_after_convs", board_obs, features=None, progress=False)
    raw.save(tmp_path / "raw")
    np.testing.assert_array_equal(LayerNMF.load(tmp_path / "raw", tiny_agent).acts_reduced, raw.acts_reduced)


def test_an_interrupted_save_leaves_exactly_the_old_one(tiny_agent, board_obs, tmp_path, ctrl_c_at_write):
    old = LayerNMF(tiny_agent, "embedder.relu_after_convs", board_obs, features=2, progress=False)
    new = LayerNMF(tiny_agent, "embedder.relu_after_convs", board_obs, features=3, progress=False)
    old.save(tmp_path / "nmf")
    for at in (1, 2, 3):  # layer_nmf.safetensors, layer_nmf.json, manifest.json
        with ctrl_c_at_write(at):
            new.save(tmp_path / "nmf")
        np.testing.assert_array_equal(LayerNMF.load(tmp_path / "nmf", tiny_agent).channel_dirs, old.channel_dirs)
    new.save(tmp_path / "nmf")
    assert LayerNMF.load(tmp_path / "nmf", tiny_agent).channel_dirs.shape == (3, 8)
    (tmp_path / "nmf" / "layer_nmf.json").write_text('{"class": "other"}')
    (tmp_path / "nmf" / "manifest.json").unlink()
    with pytest.raises(ValueError, match="not a saved xrl LayerNMF"):
        LayerNMF.load(tmp_path / "nmf", tiny_agent)
