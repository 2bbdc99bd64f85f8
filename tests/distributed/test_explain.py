"""xrl.distributed.explain equals one serial explain call of the saved explainer, images and tabular (with
retries, per-row conditions, regression intervals and diversity), whatever the workers; ExplainBatches in Ray Data."""
from __future__ import annotations

import functools
import sys
import threading

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from xrl.counterfactual import CounterfactualRL, CounterfactualRLTabular
from xrl.models.tabular import HeAE, HeAETrainConfig, TabularDecoder, TabularEncoder, train_heae
from xrl.preprocessing import TabularPreprocessor

ray = pytest.importorskip("ray")
import xrl.distributed as xd  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = pytest.mark.xdist_group("ray")


# ------------------------------------------------------------------------------ images: digits, custom networks
class Encoder(nn.Module):
    """Convolutional, so that CFRL runs it through xrl.accel's channels-last path (checked calls, then NHWC)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 8), nn.Tanh())

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 512), nn.Unflatten(1, (8, 8, 8)), nn.ReLU(),
                                 nn.Conv2d(8, 1, 3, padding=1), nn.Sigmoid())

    def forward(self, z):
        return self.net(z)


def classifier() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def load_classifier(path) -> nn.Module:
    """The predictor factory's work: build the black box where it runs, from its weights file."""
    from safetensors.torch import load_file

    model = classifier()
    model.load_state_dict(load_file(path))
    return model.eval()


def custom_networks() -> dict:
    """What load() needs beyond the files: the custom encoder/decoder architectures (weights come from the save)."""
    return {"encoder": Encoder(), "decoder": Decoder()}


@pytest.fixture(scope="module")
def image_save(digits, digits_models, tmp_path_factory):
    """The shared digits classifier (tests/conftest.py) copied into this module's class, which Ray workers can
    rebuild, a small convolutional autoencoder, and a briefly trained explainer saved with them."""
    from safetensors.torch import save_file

    X, _ = digits
    clf = classifier()
    clf.load_state_dict(digits_models[0].net.state_dict())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        enc, dec = Encoder(), Decoder()
    Xt, g = torch.from_numpy(X), torch.Generator().manual_seed(0)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], 1e-2)
    for _ in range(200):
        batch = Xt[torch.randint(0, len(Xt), (256,), generator=g)]
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy(dec(enc(batch)), batch).backward()
        opt.step()
    root = tmp_path_factory.mktemp("image")
    save_file(clf.state_dict(), root / "classifier.safetensors")
    cf = CounterfactualRL(clf.eval(), enc.eval(), dec.eval(), coeff_sparsity=0.5, coeff_consistency=0.0, latent_dim=8,
                          train_steps=80, batch_size=32, actor_hidden_dim=32, critic_hidden_dim=32, progress=False,
                          seed=2).fit(X[:300])
    cf.save(root / "explainer")
    return root / "explainer", functools.partial(load_classifier, root / "classifier.safetensors"), X


def assert_same(a, b, where="data"):
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, obj=where)
    elif a is None:
        assert b is None, where
    else:
        np.testing.assert_array_equal(a, b, err_msg=where)
        assert np.asarray(a).dtype == np.asarray(b).dtype, where


def assert_same_explanation(dist, serial):
    assert dist.meta == serial.meta
    assert_same(dist.data, serial.data)


def test_image_explain_equals_the_serial_call(ray_cluster, image_save):
    path, predictor_factory, X = image_save
    X = X[:230]                                                          # 5 batches of 50, the last one of 30
    targets = (predictor_factory()(torch.from_numpy(X)).argmax(1).numpy() + 3) % 10
    serial = CounterfactualRL.load(path, predictor_factory(), **custom_networks()).explain(X, targets, batch_size=50)
    dist = xd.explain(path, predictor_factory, X, targets, num_workers=2, batch_size=50,
                      load_kwargs_factory=custom_networks, progress=False)  # 5 chunks of one batch over 2 workers
    assert_same_explanation(dist, serial)
    assert np.abs(dist.data["cf"]["X"] - X).mean() > 0.01 and dist.data["cf"]["X"].std(0).mean() > 0.01  # not trivial


def test_an_explainer_gives_a_batch_the_same_counterfactuals_whatever_it_computed_before(image_save):
    """The serial property distributed explain relies on (no Ray): xrl.accel's checked calls return the eager
    answer, so the explainer settles them before its first batch instead of letting them change early batches."""
    path, predictor_factory, X = image_save
    explainer = CounterfactualRL.load(path, predictor_factory(), **custom_networks())
    assert explainer._encode.status == "checking"                      # the convolutions are accelerated
    targets = np.arange(150) % 10
    later = explainer.explain(X[:150], targets, batch_size=50).data["cf"]["X"]
    pieces = [CounterfactualRL.load(path, predictor_factory(), **custom_networks()).explain(
        X[a:a + 50], targets[a:a + 50], batch_size=50).data["cf"]["X"] for a in (100, 0, 50)]
    first = explainer.explain(X[:150], targets, batch_size=50).data["cf"]["X"]
    np.testing.assert_array_equal(first, later)
    np.testing.assert_array_equal(np.concatenate([pieces[1], pieces[2], pieces[0]]), later)


# -------------------------------------------------------------------------------- tabular: mixed rows, numpy box
NAMES = ["Age", "Job", "Hours", "Sex"]
CMAP = {"Job": ["clerk", "manager", "nurse"], "Sex": ["F", "M"]}


def rows(n, seed=0):
    rng = np.random.default_rng(seed)
    X = np.empty((n, 4), dtype=object)
    X[:, 0] = rng.integers(18, 70, n)
    X[:, 1] = rng.choice(CMAP["Job"], n)
    X[:, 2] = np.round(rng.uniform(5, 60, n), 1)
    X[:, 3] = rng.choice(CMAP["Sex"], n)
    return X


class Black:
    """A black box on the original format: a score from Age, Job and Hours (row by row: batch-size independent)."""

    def __init__(self, regression=False, refuse_age=None):
        self.regression, self.refuse_age = regression, refuse_age

    def __call__(self, X):
        X = X.to_numpy() if isinstance(X, pd.DataFrame) else X
        if self.refuse_age is not None and (X[:, 0].astype(float) == self.refuse_age).any():
            raise ValueError(f"the scoring service refuses Age={self.refuse_age}")
        s = 0.05 * (X[:, 0].astype(float) - 40) + (X[:, 1] == "manager") + 0.02 * (X[:, 2].astype(float) - 30)
        if self.regression:
            return s.astype(np.float32)
        p = 1 / (1 + np.exp(-s))
        return np.stack([1 - p, p], 1)


@pytest.fixture(scope="module")
def tabular_saves(tmp_path_factory):
    X = rows(160)
    pre = TabularPreprocessor(category_map=CMAP, feature_names=NAMES).fit(X)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ae = HeAE(TabularEncoder(pre.model_dim, 16, 3), TabularDecoder(3, 16, pre.head_dims))
    train_heae(ae, pre.transform(X), pre.n_num, pre.cat_sizes_, HeAETrainConfig(epochs=5, batch_size=32, log_every=0))
    root, paths = tmp_path_factory.mktemp("tabular"), {}
    for regression in (False, True):
        cf = CounterfactualRLTabular(Black(regression), ae.encoder, ae.decoder, 3, pre, None, 0.5, 0.5,
                                     immutable_features=["Sex"], ranges={"Age": [0, 1]}, train_steps=40,
                                     batch_size=16, actor_hidden_dim=16, critic_hidden_dim=16, exploration_steps=5,
                                     update_after=2, replay_buffer_size=20, progress=False, seed=1)
        paths[regression] = root / f"regression={regression}"
        cf.fit(X).save(paths[regression])
    return paths


def test_tabular_explain_equals_the_serial_call(ray_cluster, tabular_saves):
    path = tabular_saves[False]
    X = rows(70, seed=5)
    targets = np.arange(70) % 2
    conditions = [{"Age": [0, 1 + i % 7], "Job": ["nurse"] if i % 3 else []} for i in range(70)]
    serial = CounterfactualRLTabular.load(path, Black()).explain(X, targets, conditions, batch_size=16)
    dist = xd.explain(path, Black, X, targets, conditions, num_workers=2, batch_size=16, chunk_size=32,
                      progress=False)                                     # rows 0:32, 32:64, 64:70
    assert_same_explanation(dist, serial)
    assert dist.data["cf"]["X"].dtype == object and dist.data["condition"].shape[0] == 70


def test_tabular_regression_with_retries_equals_the_serial_call(ray_cluster, tabular_saves):
    path = tabular_saves[True]
    X, interval = rows(60, seed=4), np.array([0.5, 1.5])                 # one interval [low, high] for all rows
    explainer = CounterfactualRLTabular.load(path, Black(True), seed=9)
    assert (~explainer.explain(X, interval, {}, batch_size=16, retries=0).data["valid"]).any()  # retries matter
    serial = explainer.explain(X, interval, {}, batch_size=16, retries=8)
    dist = xd.explain(path, functools.partial(Black, True), X, interval, {}, num_workers=2, batch_size=16,
                      seed=9, retries=8, progress=False)
    assert_same_explanation(dist, serial)
    assert dist.data["target"].shape == (60, 2)


def test_retries_give_a_row_the_same_counterfactual_in_any_whole_batch_pieces(tabular_saves):
    """The serial property distributed explain relies on (no Ray): retries are seeded per row."""
    explainer = CounterfactualRLTabular.load(tabular_saves[True], Black(True))
    X, interval = rows(48, seed=4), np.array([[0.5, 1.5]])
    whole = explainer.explain(X, interval, {}, batch_size=8, retries=8)
    pieces = [explainer.explain(X[a:b], interval, {}, batch_size=8, retries=8) for a, b in ((0, 16), (16, 40),
                                                                                             (40, 48))]
    np.testing.assert_array_equal(np.concatenate([p.data["cf"]["X"] for p in pieces]), whole.data["cf"]["X"])
    np.testing.assert_array_equal(np.concatenate([p.data["valid"] for p in pieces]), whole.data["valid"])
    reseeded = CounterfactualRLTabular.load(tabular_saves[True], Black(True), seed=123)
    other = reseeded.explain(X, interval, {}, batch_size=8, retries=8)
    assert not np.array_equal(other.data["cf"]["X"], whole.data["cf"]["X"])  # the seed drives the perturbations


def test_diverse_explanations_equal_the_serial_calls_per_row(ray_cluster, tabular_saves):
    path = tabular_saves[False]
    X, targets = rows(3, seed=7), np.array([1, 0, 1])
    explainer = CounterfactualRLTabular.load(path, Black())
    options = dict(diversity=True, num_samples=3, patience=4, batch_size=16)
    serial = [explainer.explain(X[i:i + 1], targets[i:i + 1], {}, **options) for i in range(3)]
    dist = xd.explain(path, Black, X, targets, {}, num_workers=2, progress=False, **options)
    assert isinstance(dist, list) and len(dist) == 3
    for d, s in zip(dist, serial):
        assert_same_explanation(d, s)
    assert sum(len(d.data["cf"]["X"]) for d in dist) > 3                 # several counterfactuals for some row


def test_a_failing_chunk_is_named_and_nothing_is_returned(ray_cluster, tabular_saves):
    X = rows(64, seed=5)
    X[40, 0] = 99                                                        # in chunk 2: rows 32:48
    with pytest.raises(xd.WorkerError, match=r"chunk 2 of 4 \(rows 32:48\) failed: ValueError: the scoring "
                                             r"service refuses Age=99; no partial result") as info:
        xd.explain(tabular_saves[False], functools.partial(Black, refuse_age=99), X, np.array([1]), {},
                   num_workers=2, batch_size=16, chunk_size=16, progress=False)
    assert info.value.chunk == 2 and info.value.what == "rows 32:48" and isinstance(info.value.cause, ValueError)


def test_bad_arguments_fail_before_any_worker_starts(tabular_saves, tmp_path):
    path, X = tabular_saves[False], rows(8)
    lock = threading.Lock()
    with pytest.raises(TypeError, match="predictor_factory: expected an object Ray can serialize"):
        xd.explain(path, lambda: lock, X, [1], num_workers=2)
    with pytest.raises(TypeError, match="predictor_factory: expected a function"):
        xd.explain(path, 3, X, [1], num_workers=2)
    with pytest.raises(TypeError, match="load_kwargs_factory: expected None or a function"):
        xd.explain(path, Black, X, [1], num_workers=2, load_kwargs_factory={"encoder": None})
    with pytest.raises(ValueError, match="chunk_size: expected a multiple of batch_size=16"):
        xd.explain(path, Black, X, [1], num_workers=2, batch_size=16, chunk_size=24)
    with pytest.raises(FileNotFoundError, match="missing"):
        xd.explain(tmp_path / "nothing", Black, X, [1], num_workers=2)
    (tmp_path / "other").mkdir()
    with pytest.raises(ValueError, match="config.json"):
        xd.explain(tmp_path / "other", Black, X, [1], num_workers=2)
    with pytest.raises(ValueError, match="num_workers"):
        xd.explain(path, Black, X, [1], num_workers=0)


# ----------------------------------------------------------------------------------------------------- Ray Data
def test_explain_batches_in_ray_data_equal_the_serial_call(ray_cluster, image_save):
    path, predictor_factory, X = image_save
    X = X[:200]
    targets = X.reshape(len(X), -1).sum(1).astype(int) % 10
    serial = CounterfactualRL.load(path, predictor_factory(), **custom_networks()).explain(X, targets, batch_size=50)
    context = ray.data.DataContext.get_current()
    preserve, context.execution_options.preserve_order = context.execution_options.preserve_order, True
    try:
        ds = ray.data.from_numpy([X[:100], X[100:]])                      # two blocks of two batches each
        ds = ds.map_batches(lambda b: {**b, "target": b["data"].reshape(len(b["data"]), -1).sum(1).astype(int) % 10})
        out = ds.map_batches(xd.ExplainBatches, fn_constructor_kwargs=dict(
            explainer=xd.SavedExplainer.read(path), predictor_factory=predictor_factory,
            load_kwargs_factory=custom_networks, x_column="data", target_column="target", batch_size=50),
            batch_size=100, batch_format="numpy", concurrency=2).take_batch(200, batch_format="numpy")
    finally:
        context.execution_options.preserve_order = preserve
    np.testing.assert_array_equal(out["data"], X)
    np.testing.assert_array_equal(out["cf_X"], serial.data["cf"]["X"])
    np.testing.assert_array_equal(out["cf_class"], serial.data["cf"]["class"][:, 0])
    np.testing.assert_array_equal(out["orig_class"], serial.data["orig"]["class"][:, 0])
    np.testing.assert_array_equal(out["target"], targets)


def test_explain_batches_on_pandas_batches(tabular_saves):
    """The pandas batch format (tabular), called as Ray Data calls it (no Ray needed)."""
    path = tabular_saves[True]
    frame = pd.DataFrame(rows(20, seed=2), columns=NAMES).assign(id=np.arange(20))
    batches = xd.ExplainBatches(path, functools.partial(Black, True), Y_t=[[0.5, 1.5]], C={}, batch_size=8)
    out = batches(frame)
    serial = CounterfactualRLTabular.load(path, Black(True)).explain(frame[NAMES], [[0.5, 1.5]], {}, batch_size=8)
    assert list(out["id"]) == list(range(20))
    np.testing.assert_array_equal(out[[f"cf_{n}" for n in NAMES]].to_numpy(), serial.data["cf"]["X"])
    np.testing.assert_array_equal(out["valid"], serial.data["valid"])
    assert (out["target_0"] == 0.5).all() and (out["target_1"] == 1.5).all()
    with pytest.raises(ValueError, match="exactly one of Y_t"):
        xd.ExplainBatches(path, Black)
    with pytest.raises(ValueError, match="diversity"):
        xd.ExplainBatches(path, Black, Y_t=[1], diversity=True)
