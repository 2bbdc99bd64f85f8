"""Editing with a bad direction or value is a clear error, and leaves the model untouched."""
import numpy as np
import pytest
import torch

from xrl.vision import ParameterEditor, get_var, project_out_direction


@pytest.mark.parametrize("direction, error, match", [
    (np.array([np.nan, 1, 1, 1]), ValueError, "direction: expected finite values.*1 entries are NaN or inf"),
    (np.array([np.inf, 1, 1, 1]), ValueError, "direction: expected finite values"),
    (np.zeros(4), ValueError, "direction: expected a non-zero vector"),
    (np.ones((2, 4)), ValueError, r"direction: expected one vector \[C\].*pick one row"),
    ("saw", TypeError, r"direction: expected a numeric vector \[C\]"),
    (np.ones(5), ValueError, "direction: expected 4 channels"),
])
def test_bad_directions_are_refused_before_any_edit(tiny_agent, board_obs, direction, error, match):
    before = get_var(tiny_agent, "embedder.block2.conv.weight")
    with pytest.raises(error, match=match):
        project_out_direction(tiny_agent, "embedder.block1", direction, example_obs=board_obs, inplace=True)
    np.testing.assert_array_equal(get_var(tiny_agent, "embedder.block2.conv.weight"), before)
    assert np.isfinite(before).all()


def test_a_direction_as_a_row_or_a_tensor_is_accepted(tiny_agent, board_obs):
    d = np.random.default_rng(0).random(4).astype(np.float32)
    a = project_out_direction(tiny_agent, "embedder.block1", d, example_obs=board_obs)
    b = project_out_direction(tiny_agent, "embedder.block1", torch.from_numpy(d)[None], example_obs=board_obs)
    torch.testing.assert_close(a.embedder.block2.conv.weight, b.embedder.block2.conv.weight, rtol=0, atol=0)
    assert np.isfinite(get_var(a, "embedder.block2.conv")).all()


def test_parameter_editor_refuses_nan_and_wrong_shapes(tiny_agent):
    editor = ParameterEditor(tiny_agent)
    before = editor["fc_value.weight"]
    with pytest.raises(ValueError, match=r"value for 'fc_value.weight': expected finite values.*16 entries"):
        editor["fc_value.weight"] = np.full((1, 16), np.nan)
    with pytest.raises(ValueError, match=r"value for 'fc_value.weight': expected shape \(1, 16\)"):
        editor["fc_value.weight"] = np.ones((2, 16))
    with pytest.raises(TypeError, match="value for 'fc_value.weight': expected a numeric array"):
        editor["fc_value.weight"] = [["a"] * 16]
    np.testing.assert_array_equal(editor["fc_value.weight"], before)
