"""MNIST loader on locally built idx files (no download in tests)."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from xrl.datasets import load_digits_images, read_idx
from xrl.datasets import _cache
from xrl.datasets.mnist import MNIST_MD5, load_mnist, mnist_files


def write_idx(path, arr: np.ndarray, gz: bool = False) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def fake_mnist(folder, gz=False):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 5)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n), gz)


def test_read_idx_round_trip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), arr)
    write_idx(tmp_path / "b", arr, gz=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "b.gz"), arr)


def test_read_idx_rejects_corrupt_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="bad magic number"):
        read_idx(tmp_path / "bad")
    arr = np.zeros((4, 5), np.uint8)
    write_idx(tmp_path / "trunc", arr)
    (tmp_path / "trunc").write_bytes((tmp_path / "trunc").read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "trunc")


def test_local_folder_checksums_are_enforced(tmp_path):
    fake_mnist(tmp_path)
    with pytest.raises(ValueError, match="md5 checksum mismatch"):
        load_mnist(tmp_path, data_home=tmp_path / "cache")


def test_local_folder_without_verification_loads_both_layouts(tmp_path):
    fake_mnist(tmp_path)
    (X, y), (Xt, yt) = load_mnist(tmp_path, verify=False)
    assert X.shape == (12, 1, 28, 28) and X.dtype == np.float32 and 0 <= X.min() and X.max() <= 1
    assert y.dtype == np.int64 and Xt.shape == (5, 1, 28, 28) and yt.shape == (5,)
    (X2, _), _ = load_mnist(tmp_path, verify=False, channels_first=False, normalize=False)
    assert X2.shape == (12, 28, 28, 1) and X2.dtype == np.uint8
    np.testing.assert_allclose(X2[..., 0] / 255.0, X[:, 0], rtol=1e-6)


def test_gz_folder_and_missing_files(tmp_path):
    fake_mnist(tmp_path, gz=True)
    (X, _), _ = load_mnist(tmp_path, verify=False)
    assert X.shape == (12, 1, 28, 28)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_mnist(tmp_path / "nowhere")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path, verify=False)


def test_cache_dir_honours_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("XRL_DATA_DIR", str(tmp_path / "here"))
    assert _cache.data_home() == tmp_path / "here"
    f = tmp_path / "x"
    f.write_bytes(b"abc")
    assert _cache.file_digest(f) == "900150983cd24fb0d6963f7d28e17f72"
    with pytest.raises(ValueError, match="checksum mismatch"):
        _cache.check_file(f, "0" * 32, "md5")


def test_fetch_falls_back_and_reports_every_source(tmp_path, monkeypatch):
    monkeypatch.setenv("XRL_DATA_DIR", str(tmp_path))

    def broken_source(target):
        raise OSError("no network")

    def wrong_source(target):
        target.write_bytes(b"wrong")
        return True

    def good_source(target):
        target.write_bytes(b"abc")
        return True

    out = _cache.fetch_verified(tmp_path / "f", "900150983cd24fb0d6963f7d28e17f72", "md5",
                                [broken_source, wrong_source, good_source])
    assert out.read_bytes() == b"abc"
    with pytest.raises(RuntimeError, match="broken_source: no network; wrong_source: no valid file"):
        _cache.fetch_verified(tmp_path / "g", "900150983cd24fb0d6963f7d28e17f72", "md5",
                              [broken_source, wrong_source])


def test_known_checksums_cover_the_four_files():
    assert sorted(MNIST_MD5) == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "train-images-idx3-ubyte",
                                 "train-labels-idx1-ubyte"]


def test_digits_stand_in():
    X, y = load_digits_images()
    assert X.shape == (1797, 1, 8, 8) and X.dtype == np.float32 and X.max() == 1.0 and set(y) == set(range(10))
