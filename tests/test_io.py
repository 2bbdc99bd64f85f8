"""safetensors + JSON saving: atomic, strict, never unpickles."""
from __future__ import annotations

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
