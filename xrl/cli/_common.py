"""Pieces every subcommand shares: the common options, the thread setting (the only place xrl changes it), the
recorded command line and the final JSON line."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any


def add_common(p: argparse.ArgumentParser, *, out: str | None, seed: int | None = 0, device: bool = True,
               quick: str | None = None, threads: bool = True, progress: bool = True) -> None:
    """Add ``--out --seed --device --quick --threads --no-progress`` (those that apply to the job)."""
    if out is not None:
        p.add_argument("--out", default=out, help=f"output folder (default: {out})")
    if seed is not None:
        p.add_argument("--seed", type=int, default=seed, help=f"random seed (default: {seed})")
    if device:
        p.add_argument("--device", default=None,
                       help="torch device, e.g. cpu or cuda (default: cuda when available, else cpu)")
    if quick:
        p.add_argument("--quick", action="store_true", help=f"smoke-test sizes ({quick}); about a minute or less")
    if threads:
        p.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads for this command (default: torch's choice)")
    if progress:
        p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def device_of(args: argparse.Namespace) -> str:
    """The ``--device`` argument, or ``cuda`` when available, else ``cpu``."""
    if getattr(args, "device", None):
        return args.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def apply_threads(args: argparse.Namespace) -> None:
    """``--threads N``: ``torch.set_num_threads(N)`` for this process. The CLI is the only layer of xrl that changes
    the thread count; library functions never do."""
    n = getattr(args, "threads", None)
    if n is not None:
        if n < 1:
            raise SystemExit(f"xrl: error: --threads: expected a positive integer, got {n}")
        import torch

        torch.set_num_threads(n)


def command_line(args: argparse.Namespace) -> str:
    """The command as typed (``xrl ...``), to record next to what it produced."""
    argv = getattr(args, "argv", None)
    return "xrl " + shlex.join(sys.argv[1:] if argv is None else argv)


def finish(result: dict[str, Any], out: str | Path | None = None, message: str | None = None) -> int:
    """Print an optional human line to stderr and one JSON line to stdout; return the exit status 0."""
    if message:
        print(message, file=sys.stderr, flush=True)
    if out is not None:
        print(f"wrote {out}", file=sys.stderr, flush=True)
    print(json.dumps(result, default=str), flush=True)
    return 0
