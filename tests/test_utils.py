"""Shared helpers: eval_mode restores every submodule's own mode, also after an error."""
import pytest
import torch
import torch.nn as nn

from xrl._utils import eval_mode


def test_eval_mode_restores_each_submodule_also_on_error():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    net.train()
    net[1].eval()  # the user froze this BatchNorm
    stats = net[1].running_mean.clone()
    with pytest.raises(RuntimeError):
        with eval_mode(net, None):
            assert not any(m.training for m in net.modules())
            net(torch.randn(5, 3))
            raise RuntimeError("boom")
    assert net.training and net[0].training and not net[1].training and net[2].training
    assert torch.equal(net[1].running_mean, stats)


def test_init_rng_seeds_construction_like_manual_seed_and_leaves_the_global_rng():
    from xrl._utils import init_rng

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        reference = nn.Linear(5, 3)
    before = torch.random.get_rng_state()
    with init_rng(7):
        seeded = nn.Linear(5, 3)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(seeded.weight, reference.weight) and torch.equal(seeded.bias, reference.bias)
    with pytest.raises(ValueError):
        with init_rng():
            nn.Linear(2, 2)
            raise ValueError("boom")
    assert torch.equal(torch.random.get_rng_state(), before)    # restored after an error too


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_init_rng_on_a_cuda_device_seeds_that_generator_and_restores_it():
    from xrl._utils import init_rng

    with torch.random.fork_rng(devices=[torch.device("cuda")]):
        torch.cuda.manual_seed(11)
        reference = torch.rand(4, device="cuda")
    before_cpu, before_cuda = torch.random.get_rng_state(), torch.cuda.get_rng_state()
    with init_rng(11, "cuda"):
        drawn = torch.rand(4, device="cuda")
    assert torch.equal(drawn, reference)
    assert torch.equal(torch.random.get_rng_state(), before_cpu)
    assert torch.equal(torch.cuda.get_rng_state(), before_cuda)


def test_check_scalar_accepts_numpy_numbers_and_names_the_argument():
    import numpy as np

    from xrl._validation import check_scalar

    check_scalar("batch_size", np.int64(8), int, low=1)
    check_scalar("lr", np.float32(0.1), float, low=0)
    check_scalar("seed", np.int32(3), (int, float))
    with pytest.raises(TypeError, match=r"batch_size: expected an int, got 8\.0"):
        check_scalar("batch_size", 8.0, int)
    with pytest.raises(TypeError, match="flag: expected an int or a float, got True"):
        check_scalar("flag", np.bool_(True))
    with pytest.raises(ValueError, match="steps: expected a value >= 1, got 0"):
        check_scalar("steps", np.int64(0), int, low=1)
