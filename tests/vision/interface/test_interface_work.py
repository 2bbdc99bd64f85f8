"""The computation is a list of independent work items with picklable inputs, runnable in any process."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from xrl.vision.interface import (Attribution, FeatureVis, NMFFit, Observations, Rollouts, item_inputs, plan_work,
                                  prepare_config, reduce_attribution, run_work_item)

SMALL = dict(trajectories=2, steps=12, observations=32, obs_every=4, features=2, layers=["embedder.block1"],
             integrate_steps=3, fv_steps=4)


@pytest.fixture(scope="module")
def setup():
    config, model, info = prepare_config("breakout", **SMALL)
    results = {}
    for stage in plan_work(config)[:2]:
        for item in stage:
            results[item.key] = run_work_item(item, config, item_inputs(item, results), model=model, progress=False)
    return config, model, results


def test_plan_is_stages_of_independent_items(setup):
    config, _, _ = setup
    stages = plan_work(config)
    assert stages[0] == [Rollouts(), Observations()]
    assert stages[1] == [NMFFit("embedder.block1")]
    assert stages[2] == [FeatureVis("embedder.block1"), Attribution("embedder.block1", 0),
                         Attribution("embedder.block1", 1)]
    keys = [item.key for stage in stages for item in stage]
    assert len(keys) == len(set(keys))


def test_an_item_runs_from_pickled_inputs_alone(setup):
    """What a remote worker gets: the item, the config and its inputs, pickled; it loads the agent itself."""
    config, model, results = setup
    item = Attribution("embedder.block1", 1)
    inputs = item_inputs(item, results)
    assert set(inputs) == {"obs", "actions", "nmf"} and inputs["obs"].shape == (12, 4, 10, 10)
    shipped = pickle.loads(pickle.dumps((item, config, inputs)))
    remote = run_work_item(*shipped, progress=False)                     # model=None: loaded from config.source
    local = run_work_item(item, config, inputs, model=model, progress=False)
    for kind in ("value", "action"):
        np.testing.assert_allclose(remote[kind]["totals"], local[kind]["totals"], rtol=1e-6, atol=1e-7)
        assert remote[kind]["codes"] == local[kind]["codes"]
    fv_item = FeatureVis("embedder.block1")
    fv = run_work_item(*pickle.loads(pickle.dumps((fv_item, config, item_inputs(fv_item, results)))),
                       progress=False)
    assert len(fv["images"]) == 2 and all(png.startswith(b"\x89PNG") for png in fv["images"])
    with pytest.raises(TypeError, match="item: expected a work item"):
        run_work_item("rollouts", config, {}, model=model)


def test_rollouts_and_observations_are_seeded(setup):
    config, model, results = setup
    again = run_work_item(Rollouts(), config, {}, model=model, progress=False)
    np.testing.assert_array_equal(again["obs"], results["rollouts"]["obs"])
    np.testing.assert_array_equal(again["actions"], results["rollouts"]["actions"])
    obs = results["observations"]["obs"]
    assert obs.shape == (32, 4, 10, 10)
    np.testing.assert_array_equal(run_work_item(Observations(), config, {}, model=model, progress=False)["obs"], obs)


def test_reduce_attribution_splits_the_whole_attribution(setup):
    _, _, results = setup
    nmf = results["nmf:embedder.block1"]["nmf"]
    rng = np.random.default_rng(0)
    attr = rng.normal(size=(3, 16, 5, 5)).astype(np.float32)
    maps, residual = reduce_attribution(attr, nmf)
    assert maps.shape == (3, 5, 5, 2) and residual.shape == (3, 5, 5)
    np.testing.assert_allclose(maps.sum(-1) + residual, attr.sum(1), rtol=1e-5, atol=1e-5)
    # a purely positive attribution along a direction is explained by that feature alone (up to NNLS accuracy)
    d = nmf.components_[0]
    along = np.broadcast_to(d[None, :, None, None] * 2.0, (1, 16, 5, 5)).astype(np.float32)
    maps, residual = reduce_attribution(along, nmf)
    assert np.abs(residual).max() < 1e-3 * np.abs(along.sum(1)).max()
    assert maps[..., 0].mean() > 10 * abs(maps[..., 1].mean())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_items_match_cpu(setup, tmp_path):
    """--device cuda: a work item on the GPU gives the CPU's numbers for the same inputs; a whole page builds."""
    import dataclasses

    from xrl.vision.interface import build_interface, read_page_data, validate_page_data

    config, model, results = setup
    item = Attribution("embedder.block1", 0)
    inputs = item_inputs(item, results)
    cpu = run_work_item(item, config, inputs, model=model, progress=False)
    gpu = run_work_item(item, dataclasses.replace(config, device="cuda"), inputs, progress=False)
    for kind in ("value", "action"):
        np.testing.assert_allclose(gpu[kind]["totals"], cpu[kind]["totals"], rtol=1e-3, atol=1e-4)
    path = build_interface("breakout", tmp_path / "gpu", device="cuda", progress=False, **SMALL)
    data = read_page_data(path)
    validate_page_data(data)
    assert data["settings"]["device"] == "cuda"
