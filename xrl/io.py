"""THE save/load: safetensors for tensors, JSON for configuration; written atomically; nothing unpickled on load.

A saved object is a directory holding ``<name>.safetensors`` + ``<name>.json`` (any number of pairs). Each file is
written to a temporary file in the same directory followed by ``os.replace``, so a crash never leaves a half-written
file; ``atomic_directory`` makes a whole directory one transaction (a manifest written last, then a swap by renames),
and ``verify_directory`` tells a complete save at load.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Mapping

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load_bytes
from safetensors.torch import save as _st_save_bytes

PathLike = str | os.PathLike


@contextmanager
def atomic_file(path: PathLike) -> Iterator[BinaryIO]:
    """Write one file as a transaction: yields a binary file object on a temporary sibling, which replaces ``path``
    (``os.replace``) only when the block ends normally; an error or an interruption leaves ``path`` as it was. A
    symbolic link at ``path`` is replaced by the file, never written through.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "data.bin"
    >>> with atomic_file(target) as f:
    ...     _ = f.write(b"new")
    >>> target.read_bytes()
    b'new'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; saved weights (and bundled package data) must be readable
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(data)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"config value of type {type(obj).__name__} is not JSON-serialisable")


def save_json(path: PathLike, config: Mapping[str, Any]) -> None:
    atomic_write_bytes(path, json.dumps(config, indent=1, sort_keys=True, default=_jsonable).encode())


def load_json(path: PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: expected an existing JSON file, got {str(path)!r} (missing)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: corrupt JSON ({exc}); re-save the object") from exc


def save_tensors(path: PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """Save a flat name -> tensor mapping (tensors are made contiguous and moved to CPU first).

    Tensors that share memory (tied weights, a view saved beside its base) are written as separate copies, which
    safetensors requires; loading them into a module with tied parameters ties them again."""
    flat, seen = {}, set()
    for k, v in tensors.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"tensors[{k!r}]: expected a torch.Tensor, got {type(v).__name__}")
        t = v.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            t = t.clone()
        elif ptr is not None:
            seen.add(ptr)
        flat[k] = t
    atomic_write_bytes(path, _st_save_bytes(flat, metadata=dict(metadata) if metadata else None))


def load_tensors(path: PathLike, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: expected an existing .safetensors file, got {str(path)!r} (missing)")
    try:
        tensors = _st_load_bytes(path.read_bytes())
    except (SafetensorError, Exception) as exc:  # safetensors raises several types on corrupt headers
        raise ValueError(f"{path}: not a valid safetensors file ({exc}); the file is corrupt or truncated") from exc
    return {k: v.to(device) for k, v in tensors.items()}


def prefixed_state(prefix: str, module_or_state: torch.nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = module_or_state.state_dict() if isinstance(module_or_state, torch.nn.Module) else module_or_state
    return {f"{prefix}.{k}": v for k, v in state.items()}


def strip_prefix(prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def load_state_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """load_state_dict with an error that lists missing/unexpected keys and shape mismatches by name."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: saved {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:8]}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:8]}")
        if shapes:
            parts.append("shape mismatches " + "; ".join(shapes[:8]))
        raise ValueError(f"{what}: saved weights do not fit the network ({', '.join(parts)}); "
                         "build the network with the same architecture it was saved with")
    module.load_state_dict(state)


def save_module(directory: PathLike, name: str, module: torch.nn.Module, config: Mapping[str, Any]) -> None:
    """Save one module as ``<name>.safetensors`` + ``<name>.json`` in ``directory``."""
    directory = Path(directory)
    save_tensors(directory / f"{name}.safetensors", module.state_dict())
    save_json(directory / f"{name}.json", config)


def load_module_state(directory: PathLike, name: str, device: torch.device | str = "cpu"):
    directory = Path(directory)
    return load_json(directory / f"{name}.json"), load_tensors(directory / f"{name}.safetensors", device)


# ---- optimizer state <-> safetensors + JSON ---------------------------------------------------------------------
def optimizer_to_tensors(optimizer: torch.optim.Optimizer, prefix: str = "") -> tuple[dict[str, torch.Tensor],
                                                                                        dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and JSON (its ``param_groups``).

    Tensor keys are ``f"{prefix}state.{param_index}.{name}"`` (python numbers such as Adam's ``step`` become 0-d
    tensors), so several optimizers can share one safetensors file under different prefixes. The inverse is
    :func:`load_optimizer`.

    Examples
    --------
    >>> net = torch.nn.Linear(2, 1)
    >>> opt = torch.optim.Adam(net.parameters())
    >>> tensors, meta = optimizer_to_tensors(opt, prefix="actor.")
    >>> load_optimizer(torch.optim.Adam(net.parameters()), tensors, meta, prefix="actor.")
    """
    sd = optimizer.state_dict()
    # copies: the optimizer updates its state in place, and a snapshot must not move with it
    tensors = {f"{prefix}state.{pid}.{key}": (value.detach().clone() if torch.is_tensor(value) else torch.tensor(value))
               for pid, st in sd["state"].items() for key, value in st.items()}
    return tensors, {"param_groups": sd["param_groups"]}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any],
                   prefix: str = "") -> None:
    """Restore what :func:`optimizer_to_tensors` wrote (keys of other prefixes in ``tensors`` are ignored).

    Raises ValueError if ``meta`` has no ``param_groups`` or their parameter count differs from the optimizer's."""
    groups = meta.get("param_groups") if isinstance(meta, Mapping) else None
    if not isinstance(groups, list):
        raise ValueError("optimizer state: the JSON part has no 'param_groups' list; re-save the object")
    have = [len(g["params"]) for g in optimizer.param_groups]
    saved = [len(g.get("params", [])) for g in groups]
    if have != saved:
        raise ValueError(f"optimizer state: saved for parameter groups of sizes {saved}, this optimizer has {have}; "
                         "the network differs from the one that was saved")
    state: dict[int, dict[str, torch.Tensor]] = {}
    head = f"{prefix}state."
    for key, value in tensors.items():
        if key.startswith(head):
            pid, name = key[len(head):].split(".", 1)
            # Adam keeps `step` on the CPU unless capturable/fused; the saved copy may have been moved to a device
            state.setdefault(int(pid), {})[name] = value.cpu() if name == "step" else value
    optimizer.load_state_dict({"state": state, "param_groups": list(groups)})


# ---- whole-directory saves: one transaction per saved object ----------------------------------------------------
MANIFEST = "manifest.json"
_NEW, _OLD = ".xrl-new-", ".xrl-old"


def _old_sibling(path: Path) -> Path:
    return path.parent / f".{path.name}{_OLD}"


def _recover_directory(path: Path) -> None:
    """Finish or undo a swap that an interruption cut between its two renames (see ``atomic_directory``).

    Between ``path -> .path.xrl-old`` and ``new -> path`` the object lives only in the old sibling: put it back.
    Once ``path`` exists again, a leftover old sibling is the previous save and is removed."""
    old = _old_sibling(path)
    if old.is_dir() and not old.is_symlink():
        if not os.path.lexists(path):
            os.rename(old, path)
        else:
            shutil.rmtree(old)


def _file_digest(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _carry_over(old: Path, new: Path) -> None:
    """Hard-link (or copy) into ``new`` the files of ``old`` that are not part of the previous save and that the new
    save does not write: a user's own files in a save folder (a README, notes) survive a re-save."""
    previous = set()
    if (old / MANIFEST).is_file():
        try:
            previous = set(json.loads((old / MANIFEST).read_text()).get("files", {}))
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            previous = set()
    written = set(_files_under(new))
    for rel in _files_under(old):
        if rel in previous or rel in written or _NEW in rel or rel.endswith(_OLD):
            continue
        src, dst = old / rel, new / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


@contextmanager
def atomic_directory(path: PathLike) -> Iterator[Path]:
    """Write a whole saved object (a directory of files) as one transaction.

    Yields a fresh temporary sibling directory to write every file into. On a normal exit a ``manifest.json``
    (each file's size and SHA-256) is written last, then the temporary directory is swapped in for ``path`` with two
    renames. An exception or an interruption at any point leaves ``path`` holding exactly the previous save (or
    nothing, if there was none), never a mix; an interruption between the two renames is repaired by the next save or
    ``verify_directory``. Files in an existing ``path`` that are not part of the previous save and that the new save
    does not write are carried over, so a user's own files in the folder are not lost; they are not listed in the
    manifest (editing them does not make the save incomplete).

    Parameters
    ----------
    path : str or PathLike
        The saved object's directory. A symbolic link or a regular file there is refused (nothing is written through
        a link).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "model"
    >>> with atomic_directory(target) as tmp:
    ...     save_json(tmp / "config.json", {"a": 1})
    >>> sorted(p.name for p in target.iterdir())
    ['config.json', 'manifest.json']
    """
    path = Path(path)
    if path.is_symlink():
        raise ValueError(f"path: {str(path)!r} is a symbolic link; save to a real directory (nothing is written "
                         "through links)")
    if path.exists() and not path.is_dir():
        raise ValueError(f"path: {str(path)!r} exists and is not a directory; choose a directory path")
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover_directory(path)
    for stale in path.parent.glob(f".{path.name}{_NEW}*"):  # left by a process killed while writing
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}{_NEW}"))
    try:
        yield tmp
        # the manifest lists what this save wrote; a user's own files carried over are theirs to edit
        files = {rel: {"bytes": (tmp / rel).stat().st_size, "sha256": _file_digest(tmp / rel)}
                 for rel in _files_under(tmp)}
        if path.is_dir():
            _carry_over(path, tmp)
        save_json(tmp / MANIFEST, {"format": "xrl-directory/1", "files": files})
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        _fsync_dir(tmp)
        old = _old_sibling(path)
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
        _fsync_dir(path.parent)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def verify_directory(path: PathLike) -> dict[str, Any] | None:
    """Check that ``path`` is a complete save: every file its manifest lists, with the same size and SHA-256.

    Returns the manifest, or None for a directory saved before manifests existed (accepted as it is). Raises
    FileNotFoundError for a missing directory and ValueError naming the first file that is missing or differs."""
    path = Path(path)
    _recover_directory(path)
    if not path.is_dir():
        raise FileNotFoundError(f"path: expected a saved directory, got {str(path)!r} (missing)")
    if not (path / MANIFEST).is_file():
        return None
    manifest = load_json(path / MANIFEST)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise ValueError(f"{path / MANIFEST}: not an xrl manifest (no 'files' table); re-save the object")
    for rel, entry in files.items():
        file = path / rel
        if not file.is_file():
            raise ValueError(f"{path}: incomplete save, {rel!r} listed in {MANIFEST} is missing; re-save the object")
        if file.stat().st_size != entry.get("bytes") or _file_digest(file) != entry.get("sha256"):
            raise ValueError(f"{path}: {rel!r} differs from the save's {MANIFEST} (changed or truncated after "
                             "saving); re-save the object")
    return manifest
