"""safetensors + JSON saving: atomic, strict, never unpickles."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn as nn

from xrl import io


def test_tensors_round_trip_and_atomic_write(tmp_path):
    t = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int64)}
    io.save_tensors(tmp_path / "w.safetensors", t)
    back = io.load_tensors(tmp_path / "w.safetensors")
    assert set(back) == {"a", "b"} and torch.equal(back["a"], t["a"]) and back["b"].dtype == torch.int64
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary left behind


def test_corrupt_and_missing_files(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 20)
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        io.load_tensors(tmp_path / "bad.safetensors")
    with pytest.raises(FileNotFoundError, match="missing"):
        io.load_tensors(tmp_path / "nope.safetensors")
    (tmp_path / "c.json").write_text("{")
    with pytest.raises(ValueError, match="corrupt JSON"):
        io.load_json(tmp_path / "c.json")


def test_pickle_payload_is_not_executed(tmp_path):
    import pickle

    class Boom:
        def __reduce__(self):
            return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))

    (tmp_path / "evil.safetensors").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ValueError):
        io.load_tensors(tmp_path / "evil.safetensors")
    assert not (tmp_path / "PWNED").exists()


def test_strict_state_loading_names_the_problem():
    a, b = nn.Linear(3, 2), nn.Linear(4, 2)
    with pytest.raises(ValueError, match="shape mismatches weight"):
        io.load_state_strict(b, a.state_dict(), "net")
    with pytest.raises(ValueError, match="missing keys \\['bias'\\]"):
        io.load_state_strict(a, {"weight": a.weight.detach()}, "net")


def test_json_handles_numpy(tmp_path):
    io.save_json(tmp_path / "c.json", {"x": np.float32(1.5), "y": np.arange(3), "z": np.int64(2)})
    assert io.load_json(tmp_path / "c.json") == {"x": 1.5, "y": [0, 1, 2], "z": 2}


# ---- whole-directory transactions ------------------------------------------------------------------------------
def _save_pair(directory, value, extra=True):
    with io.atomic_directory(directory) as tmp:
        io.save_tensors(tmp / "w.safetensors", {"w": torch.full((3,), float(value))})
        io.save_json(tmp / "w.json", {"value": value})
        if extra:
            io.save_json(tmp / "state.json", {"value": value})


def _read_pair(directory):
    io.verify_directory(directory)
    w = io.load_tensors(directory / "w.safetensors")["w"]
    cfg = io.load_json(directory / "w.json")["value"]
    assert float(w[0]) == cfg, "a mix of two saves"
    return cfg


def test_atomic_directory_writes_manifest_and_replaces(tmp_path):
    d = tmp_path / "obj"
    _save_pair(d, 1)
    manifest = io.verify_directory(d)
    assert set(manifest["files"]) == {"w.safetensors", "w.json", "state.json"}
    _save_pair(d, 2, extra=False)
    assert _read_pair(d) == 2
    assert not (d / "state.json").exists()  # part of the previous save only: not carried over
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obj"]  # no temporary or old sibling left


def test_a_users_own_file_survives_a_resave_and_stays_theirs_to_edit(tmp_path):
    d = tmp_path / "obj"
    _save_pair(d, 1)
    (d / "notes.md").write_text("my notes")
    _save_pair(d, 2)
    assert (d / "notes.md").read_text() == "my notes"
    assert "notes.md" not in io.verify_directory(d)["files"]
    (d / "notes.md").write_text("edited later")
    assert _read_pair(d) == 2                    # still a complete save
    (d / "w.json").write_text('{"value": 3}')   # a file of the save itself is checked
    with pytest.raises(ValueError, match="'w.json' differs"):
        io.verify_directory(d)


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4])
def test_interrupted_save_leaves_exactly_the_old_one(tmp_path, monkeypatch, fail_at):
    d = tmp_path / "obj"
    _save_pair(d, 1)
    real = io.atomic_write_bytes
    calls = {"n": 0}

    def flaky(path, data):
        calls["n"] += 1
        if calls["n"] == fail_at:  # 1-3: the object's files, 4: the manifest
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(io, "atomic_write_bytes", flaky)
    with pytest.raises(KeyboardInterrupt):
        _save_pair(d, 2)
    monkeypatch.setattr(io, "atomic_write_bytes", real)
    assert _read_pair(d) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obj"]


def test_interruption_between_the_renames_is_repaired(tmp_path, monkeypatch):
    d = tmp_path / "obj"
    _save_pair(d, 1)
    real_rename = os.rename
    calls = {"n": 0}

    def rename(src, dst):
        calls["n"] += 1
        if calls["n"] == 2:  # old save moved aside, new one not yet in place
            raise KeyboardInterrupt
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        _save_pair(d, 2)
    monkeypatch.setattr(os, "rename", real_rename)
    assert not d.exists()
    assert _read_pair(d) == 1  # verify_directory restores the old save
    _save_pair(d, 3)
    assert _read_pair(d) == 3


def test_manifest_detects_a_changed_or_missing_file(tmp_path):
    d = tmp_path / "obj"
    _save_pair(d, 1)
    (d / "w.json").write_text('{"value": 9}')
    with pytest.raises(ValueError, match="differs"):
        io.verify_directory(d)
    (d / "w.json").unlink()
    with pytest.raises(ValueError, match="missing"):
        io.verify_directory(d)
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    assert io.verify_directory(legacy) is None  # saves from before manifests load as they are


def test_user_files_survive_a_resave_and_links_are_refused(tmp_path):
    d = tmp_path / "obj"
    _save_pair(d, 1)
    (d / "NOTES.md").write_text("mine")
    _save_pair(d, 2)
    assert (d / "NOTES.md").read_text() == "mine" and _read_pair(d) == 2
    link = tmp_path / "link"
    link.symlink_to(d)
    with pytest.raises(ValueError, match="symbolic link"):
        _save_pair(link, 3)
    assert _read_pair(d) == 2


def test_optimizer_round_trip_continues_identically():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    x = torch.randn(8, 4)
    for _ in range(3):
        opt.zero_grad()
        net(x).square().sum().backward()
        opt.step()
    tensors, meta = io.optimizer_to_tensors(opt, prefix="a.")
    twin = torch.nn.Linear(4, 2)
    twin.load_state_dict(net.state_dict())
    opt2 = torch.optim.Adam(twin.parameters(), lr=0.5)
    io.load_optimizer(opt2, {**tensors, "b.state.0.step": torch.tensor(9.0)}, meta, prefix="a.")
    assert opt2.param_groups[0]["lr"] == 0.1
    for o, n in ((opt, net), (opt2, twin)):
        o.zero_grad()
        n(x).square().sum().backward()
        o.step()
    for p, q in zip(net.parameters(), twin.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="param_groups"):
        io.load_optimizer(opt2, tensors, {}, prefix="a.")
    with pytest.raises(ValueError, match="parameter groups of sizes"):
        io.load_optimizer(torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))]), tensors, meta, prefix="a.")


def test_tied_weights_are_saved_and_tied_again(tmp_path):
    def tied():
        net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
        net[2].weight = net[0].weight  # e.g. an autoencoder whose decoder reuses the encoder's weights
        return net

    torch.manual_seed(0)
    model = tied()
    io.save_module(tmp_path, "ae", model, {"tied": True})       # safetensors alone refuses shared tensors
    cfg, state = io.load_module_state(tmp_path, "ae")
    other = tied()
    io.load_state_strict(other, state, "ae")
    x = torch.randn(3, 4)
    assert torch.equal(other(x), model(x)) and other[2].weight is other[0].weight
    io.save_tensors(tmp_path / "view.safetensors", {"w": model[0].weight.detach(), "row": model[0].weight[0].detach()})
    assert torch.equal(io.load_tensors(tmp_path / "view.safetensors")["row"], model[0].weight[0])
    with pytest.raises(TypeError, match=r"tensors\['x'\]: expected a torch.Tensor, got ndarray"):
        io.save_tensors(tmp_path / "bad.safetensors", {"x": np.zeros(2)})
