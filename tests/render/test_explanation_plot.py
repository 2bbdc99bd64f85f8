"""An Explanation's images plot whatever their layout, without pyplot state or a backend change."""
import matplotlib
import numpy as np
import pytest

from xrl.render import as_image, plot_explanation


@pytest.mark.parametrize("shape,expected", [((28, 28), (28, 28)), ((1, 28, 28), (28, 28)), ((28, 28, 1), (28, 28)),
                                            ((3, 16, 16), (16, 16, 3)), ((16, 16, 3), (16, 16, 3)),
                                            ((1, 1, 28, 28), (28, 28)), ((4, 10, 10), (10, 10, 4))])
def test_as_image_takes_every_layout(shape, expected):
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    img = as_image(x)
    assert img.shape == expected
    assert np.isclose(img.sum(), x.sum())


def test_as_image_refuses_a_batch():
    with pytest.raises(ValueError, match=r"x: expected one image.*index a single image"):
        as_image(np.zeros((5, 28, 28, 2)))


def _explanation(layout):
    rng = np.random.default_rng(0)
    X = rng.random((6, 1, 8, 8) if layout == "nchw" else (6, 8, 8, 1)).astype(np.float32)
    X_cf = np.clip(X + 0.2, 0, 1)
    return {"orig": {"X": X, "class": np.array([[0], [1], [2], [3], [4], [5]])},
            "cf": {"X": X_cf, "class": np.array([[2], [2], [7], [2], [2], [2]])}, "target": np.array([2])}


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_plot_explanation_draws_the_seed_figure(tmp_path, layout):
    import matplotlib.pyplot as plt

    backend, figs = matplotlib.get_backend(), plt.get_fignums()
    fig = plot_explanation(_explanation(layout), n=4, path=tmp_path / "e.png")
    assert (tmp_path / "e.png").stat().st_size > 1000
    axes = fig.axes
    assert len(axes) == 12                                       # 3 rows x 4 instances
    labels = [ax.get_xlabel() for ax in axes[4:8]]
    assert labels[0] == "Label: 2 (target 2)" and labels[2] == "Label: 7 (target 2)"
    colours = [ax.xaxis.label.get_color() for ax in axes[4:8]]
    assert colours[0] == "green" and colours[2] == "red"
    assert matplotlib.get_backend() == backend and plt.get_fignums() == figs


def test_plot_explanation_refuses_other_objects():
    with pytest.raises(TypeError, match="explanation: expected a counterfactual Explanation"):
        plot_explanation({"X": np.zeros((2, 8, 8))})
