"""Agent checkpoints: loading builds the network without touching the global RNGs."""
import numpy as np
import torch

from xrl.agents import ImpalaCNN, load_agent, load_bundled_agent, save_agent


def global_state():
    return torch.random.get_rng_state(), np.random.get_state()[1].copy(), torch.get_num_threads()


def assert_same_global_state(before):
    torch_state, numpy_state, threads = global_state()
    assert torch.equal(torch_state, before[0]), "the global torch RNG was consumed"
    assert np.array_equal(numpy_state, before[1]), "numpy's global RNG was consumed"
    assert threads == before[2], "torch's thread count was changed"


def test_loading_agents_leaves_the_global_rngs_alone(tmp_path):
    agent = ImpalaCNN((4, 10, 10), 3, channels=(4, 8, 8), fc_dim=16)
    save_agent(tmp_path / "a", agent)
    before = global_state()
    loaded = load_agent(tmp_path / "a")
    bundled = load_bundled_agent("breakout")
    assert_same_global_state(before)
    x = torch.rand(2, 4, 10, 10)
    torch.testing.assert_close(loaded(x), agent(x), rtol=0, atol=0)
    assert bundled.obs_shape == (4, 10, 10)


def count_writes(monkeypatch, save):
    """How many files one save writes (each goes through xrl.io.atomic_write_bytes, the manifest last)."""
    from xrl import io

    real, calls = io.atomic_write_bytes, []
    monkeypatch.setattr(io, "atomic_write_bytes", lambda path, data: calls.append(path) or real(path, data))
    save()
    monkeypatch.setattr(io, "atomic_write_bytes", real)
    return len(calls)


def same_agent(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_an_interrupted_agent_save_leaves_exactly_the_old_agent(tmp_path, monkeypatch, ctrl_c_at_write):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        old, new = (ImpalaCNN((4, 10, 10), 3, channels=(4, 8, 8), fc_dim=16) for _ in range(2))
    target = tmp_path / "agent"
    save_agent(target, old, {"version": "old"})
    writes = count_writes(monkeypatch, lambda: save_agent(tmp_path / "probe", new))
    assert writes == 3  # agent.safetensors, agent.json, manifest.json
    for at in range(1, writes + 1):
        with ctrl_c_at_write(at):
            save_agent(target, new, {"version": "new"})
        back = load_agent(target)
        assert same_agent(back, old) and back.metadata == {"version": "old"}, at
    save_agent(target, new, {"version": "new"})
    back = load_agent(target)
    assert same_agent(back, new) and back.metadata == {"version": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent", "probe"]  # no temporary folder left
