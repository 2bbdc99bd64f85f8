"""NMF: beats a random factorisation, seeded determinism, loss never rises, warnings and errors, kinds in = out."""
import torch

torch.set_num_threads(1)  # small shared CI box: one thread per xdist worker
import warnings

import numpy as np
import pytest
import torch

from xrl.nmf import NMF, ConvergenceWarning


def low_rank(n=300, k=20, r=4, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.gamma(0.5, size=(n, r))
    H = rng.gamma(0.5, size=(r, k))
    return np.maximum(W @ H + noise * rng.normal(size=(n, k)), 0).astype(np.float32)


def rel(X, W, H):
    X = np.asarray(X, np.float64)
    return np.linalg.norm(X - np.asarray(W, np.float64) @ np.asarray(H, np.float64)) / np.linalg.norm(X)


@pytest.mark.parametrize("init", ["nndsvda", "nndsvd", "random"])
def test_beats_random_factorisation_and_matches_sklearn(init):
    X = low_rank()
    nmf = NMF(4, init=init, seed=0, max_iter=500)
    W = nmf.fit_transform(X)
    assert isinstance(W, np.ndarray) and W.dtype == np.float32 and W.shape == (300, 4)
    assert (W >= 0).all() and (nmf.components_ >= 0).all()
    ours = rel(X, W, nmf.components_)
    rng = np.random.default_rng(1)
    Wr, Hr = rng.random((300, 4)), rng.random((4, 20))
    scale = (X * (Wr @ Hr)).sum() / ((Wr @ Hr) ** 2).sum()  # best scaling of the random factorisation
    assert ours < 0.5 * rel(X, scale * Wr, Hr)
    assert nmf.reconstruction_err_ == pytest.approx(np.linalg.norm(X - W @ nmf.components_), rel=1e-3)
    from sklearn.decomposition import NMF as SkNMF
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = SkNMF(4, init="nndsvda", random_state=0, max_iter=500).fit(X)
    assert ours <= sk.reconstruction_err_ / np.linalg.norm(X) * 1.01


def test_deterministic_with_seed_and_loss_never_rises():
    X = low_rank(seed=3)
    a = NMF(5, init="random", seed=7).fit_transform(X)
    b = NMF(5, init="random", seed=7).fit_transform(X)
    c = NMF(5, init="random", seed=8).fit_transform(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    for extrapolate in (True, False):
        nmf = NMF(5, init="random", seed=0, tol=0, max_iter=80, extrapolate=extrapolate)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            nmf.fit(X)
        h = np.array(nmf.loss_history_)
        assert len(h) > 5
        assert np.all(np.diff(h) <= 1e-6 * h[:-1]), "loss rose"


def test_subsample_prefit_on_tall_data_reaches_the_full_fit_error():
    X = low_rank(n=80_000, k=12, r=4, seed=5)                 # tall: "auto" pre-fits on 10,000 random rows
    nmf = NMF(4, seed=0)
    W = nmf.fit_transform(X)
    assert nmf.n_iter_subsample_ > 0
    full = NMF(4, seed=0, init_subsample=None)
    Wf = full.fit_transform(X)
    assert full.n_iter_subsample_ == 0
    ours, theirs = rel(X, W, nmf.components_), rel(X, Wf, full.components_)
    assert ours <= theirs * 1.001
    # the error reported (from the cross products) is the true error to ~1e-6: the accept/reject test relies on it
    assert nmf.reconstruction_err_ == pytest.approx(np.linalg.norm(X.astype(np.float64) - W.astype(np.float64)
                                                                   @ nmf.components_.astype(np.float64)), rel=1e-5)
    np.testing.assert_array_equal(W, NMF(4, seed=0).fit_transform(X))          # seeded subsample
    small = NMF(4, seed=0, init_subsample=0.05).fit(X)
    assert small.n_iter_subsample_ > 0


@pytest.mark.parametrize("init", ["nndsvda", "nndsvd"])
def test_rank_deficient_data_with_as_many_components_as_columns(init):
    # e.g. LayerNMF with features = channels on a layer with dead channels: the SVD init once divided by ~0 (NaN)
    X = low_rank(n=500, k=10, r=3, seed=2)
    X[:, [1, 4, 7]] = 0
    nmf = NMF(10, init=init, seed=0, max_iter=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        W = nmf.fit_transform(X)
    assert np.isfinite(W).all() and np.isfinite(nmf.components_).all()
    assert rel(X, W, nmf.components_) < 0.05


def test_convergence_warning_text():
    X = low_rank()
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        NMF(4, max_iter=2, tol=1e-12).fit(X)


def test_tensor_in_tensor_out_and_transform():
    X = torch.from_numpy(low_rank())
    nmf = NMF(4, seed=0)
    W = nmf.fit_transform(X)
    assert isinstance(W, torch.Tensor) and isinstance(nmf.components_, torch.Tensor)
    W2 = nmf.transform(X)
    assert isinstance(W2, torch.Tensor) and W2.shape == W.shape and (W2 >= 0).all()
    # transform with H fixed is at least as good as the fitted W
    H = nmf.components_
    assert (X - W2 @ H).norm() <= (X - W @ H).norm() * 1.001
    torch.testing.assert_close(nmf.inverse_transform(W2), W2 @ H)
    Wn = nmf.transform(X.numpy())
    assert isinstance(Wn, np.ndarray)


def test_errors():
    X = low_rank()
    with pytest.raises(ValueError, match="non-negative"):
        NMF(3).fit(X - 1)
    with pytest.raises(ValueError, match="2-d"):
        NMF(3).fit(X[None])
    with pytest.raises(ValueError, match="finite"):
        Y = X.copy(); Y[0, 0] = np.nan; NMF(3).fit(Y)
    with pytest.raises(ValueError, match="init"):
        NMF(3, init="svd").fit(X)
    with pytest.raises(ValueError, match="n_components"):
        NMF(0).fit(X)
    with pytest.raises(ValueError, match="init_subsample"):
        NMF(3, init_subsample=0).fit(X)
    with pytest.raises(TypeError, match="init_subsample"):
        NMF(3, init_subsample="half").fit(X)
    with pytest.raises(ValueError, match="init='random'"):
        NMF(30).fit(X)
    with pytest.raises(RuntimeError, match="fit"):
        NMF(3).transform(X)
    nmf = NMF(3).fit(X)
    with pytest.raises(ValueError, match="features"):
        nmf.transform(X[:, :5])


def test_save_load_round_trip_and_an_interrupted_save(tmp_path, ctrl_c_at_write):
    from xrl import io

    X = low_rank(seed=2)
    old = NMF(3, seed=0, max_iter=400).fit(X)
    new = NMF(4, seed=1, max_iter=400).fit(X)
    old.save(tmp_path / "nmf")
    back = NMF.load(tmp_path / "nmf")
    np.testing.assert_array_equal(back.components_, old.components_)
    np.testing.assert_array_equal(back.transform(X[:20]), old.transform(X[:20]))
    assert back.n_iter_ == old.n_iter_ and back.loss_history_ == old.loss_history_ and back.seed == 0
    for at in (1, 2, 3):  # nmf.safetensors, nmf.json, manifest.json
        with ctrl_c_at_write(at):
            new.save(tmp_path / "nmf")
        np.testing.assert_array_equal(NMF.load(tmp_path / "nmf").components_, old.components_)
    new.save(tmp_path / "nmf")
    assert NMF.load(tmp_path / "nmf").components_.shape == (4, 20)
    with pytest.raises(RuntimeError, match="not fitted"):
        NMF(2).save(tmp_path / "unfitted")
    io.save_json(tmp_path / "nmf" / "nmf.json", {"class": "something else"})
    (tmp_path / "nmf" / "manifest.json").unlink()
    with pytest.raises(ValueError, match="not a saved xrl NMF"):
        NMF.load(tmp_path / "nmf")
