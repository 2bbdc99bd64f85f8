"""labelled_grid: labels where asked, clear errors for mismatched labels, no pyplot state."""
import matplotlib
import numpy as np
import pytest

from xrl.render import labelled_grid


def test_grid_has_one_axis_per_cell_and_its_labels(tmp_path):
    import matplotlib.pyplot as plt

    figs, backend = plt.get_fignums(), matplotlib.get_backend()
    rng = np.random.default_rng(0)
    rows = [[rng.random((8, 8)), rng.random((3, 8, 8))], [rng.random((8, 8, 3)), rng.random((1, 8, 8))]]
    fig = labelled_grid(rows, tmp_path / "g.png", row_labels=["a", "b"], col_labels=["x", "y"], title="t",
                        legend=[((1, 0, 0), "red"), ((0, 0, 1), "blue")])
    assert len(fig.axes) == 4 and (tmp_path / "g.png").stat().st_size > 1000
    assert [ax.get_title() for ax in fig.axes[:2]] == ["x", "y"] and fig.axes[2].get_ylabel() == "b"
    assert plt.get_fignums() == figs and matplotlib.get_backend() == backend
    cells = labelled_grid(rows, cell_titles=[["p", "q"], ["r", "s"]])
    assert [ax.get_title() for ax in cells.axes] == ["p", "q", "r", "s"]


@pytest.mark.parametrize("kwargs,match", [({"row_labels": ["only one"]}, "row_labels: expected 2 labels"),
                                          ({"col_labels": ["a", "b", "c"]}, "col_labels: expected 2 labels")])
def test_mismatched_labels_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        labelled_grid([[np.zeros((4, 4))] * 2] * 2, **kwargs)


def test_empty_grid_is_refused():
    with pytest.raises(ValueError, match="rows: expected at least one row with one image"):
        labelled_grid([])
