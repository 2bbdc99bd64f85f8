"""Object-channel correlation of direction maps."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xrl.metrics.interpretability import best_object_matches, count_matched_objects, object_correlations


def test_planted_directions_are_found():
    rng = np.random.default_rng(0)
    objects = (rng.random((60, 3, 10, 10)) < 0.2).astype(np.float32)
    pooled = F.adaptive_avg_pool2d(torch.from_numpy(objects), (5, 5)).numpy()
    maps = np.stack([3 * pooled[:, 2], pooled[:, 0] + 0.05 * rng.random((60, 5, 5)), rng.random((60, 5, 5))], -1)
    corr = object_correlations(maps, objects)
    assert corr.shape == (3, 3)
    assert corr[0, 2] == pytest.approx(1.0) and corr[1, 0] > 0.9 and abs(corr[2]).max() < 0.2
    best = best_object_matches(corr, ["a", "b", "c"])
    assert [b["object"] for b in best[:2]] == ["c", "a"]
    res = count_matched_objects(np.vstack([corr, corr[:1]]), 0.5, ["a", "b", "c"])
    assert res["count"] == 2  # two directions on the same object count once
    chw = object_correlations(np.moveaxis(maps, -1, 1), objects, maps_layout="chw")
    np.testing.assert_allclose(chw, corr)


def test_errors():
    with pytest.raises(ValueError, match="observations"):
        object_correlations(np.zeros((3, 5, 5, 2)), np.zeros((4, 1, 10, 10)))
    with pytest.raises(ValueError):
        object_correlations(np.zeros((3, 5, 5)), np.zeros((3, 1, 10, 10)))
