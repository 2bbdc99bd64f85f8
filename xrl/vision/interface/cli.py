"""Command-line arguments of the interface (``xrl vision interface`` / ``python -m xrl.vision.interface``)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_cli_arguments", "run_cli", "QUICK", "main"]

#: ``--quick``: a small page (about a minute on 2 cores for a MinAtar agent); explicit flags still win.
QUICK = {"trajectories": 2, "steps": 128, "observations": 512, "obs_every": 16, "fv_steps": 128}
_DEFAULTS = {"trajectories": 8, "steps": 512, "observations": 4096, "obs_every": 128, "fv_steps": 512}


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the interface's flags to ``parser`` (defaults follow the original generator)."""
    parser.add_argument("--agent", required=True,
                        help="bundled agent name (coinrun, breakout, freeway), xrl checkpoint folder or SB3 .zip")
    parser.add_argument("--env", default=None, help="environment id (a MinAtar game or coinrun); required for SB3 "
                        "files, default the checkpoint's")
    parser.add_argument("--out", default=None, help="output folder (default outputs/interface/<agent>)")
    parser.add_argument("--trajectories", type=int, default=None, help="rollouts shown on the page (default 8)")
    parser.add_argument("--steps", type=int, default=None, help="frames per rollout (default 512)")
    parser.add_argument("--observations", type=int, default=None,
                        help="frames sampled for NMF and dataset examples (default 4096)")
    parser.add_argument("--obs-every", type=int, default=None,
                        help="sample one frame every this many steps (default 128)")
    parser.add_argument("--features", type=int, default=8, help="NMF features per layer (default 8)")
    parser.add_argument("--layers", default=None,
                        help="comma-separated layer names (default: every conv block output)")
    parser.add_argument("--integrate-steps", type=int, default=10, help="integrated-gradient steps (default 10)")
    parser.add_argument("--fv-steps", type=int, default=None,
                        help="feature-visualization optimisation steps (default 512)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu (default) or cuda")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--quick", action="store_true",
                        help="small settings for a first look: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    parser.add_argument("--no-action-attribution", action="store_true",
                        help="attribute the value only (halves the attribution time)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default torch's; 1 is often faster on a busy machine)")
    parser.add_argument("--workers", type=int, default=None,
                        help="spread the work items (NMF fits, layer x trajectory attributions, ...) over this many "
                        "Ray workers (pip install \"xrl[ray]\"); default: all in this process")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to run on ('auto' on a node of the cluster, or host:port printed by `ray "
                        "start --head`); default a local Ray instance when --workers is given")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="SB3 files with a custom network: unpickle it (runs code from the file; trusted files "
                        "only)")


def _settings(args: argparse.Namespace) -> dict:
    base = dict(QUICK if args.quick else _DEFAULTS)
    for key in base:
        value = getattr(args, key, None)
        if value is not None:
            base[key] = value
    return base


def run_cli(args: argparse.Namespace) -> Path:
    """Build the page described by parsed arguments; prints the path of ``index.html`` and the phase times."""
    from .build import build_interface_timed

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)                    # the command owns its process, not the library
    out = args.out or str(Path("outputs") / "interface" / Path(str(args.agent)).stem)
    settings = _settings(args)
    path, timing = build_interface_timed(
        args.agent, out, env=args.env, features=args.features, layers=args.layers,
        integrate_steps=args.integrate_steps, seed=args.seed, device=args.device, overwrite=args.overwrite,
        progress=not args.no_progress, action_attribution=not args.no_action_attribution,
        trust_pickle=args.trust_pickle, workers=getattr(args, "workers", None),
        address=getattr(args, "address", None), **settings)
    print(f"wrote {path} ({timing['output_bytes'] / 1e6:.1f} MB in {timing['total']:.0f} s); open it in a browser")
    print(json.dumps({"timing_s": timing}), file=sys.stderr)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xrl.vision.interface",
                                     description="Build the Understanding-RL-Vision page of an agent (offline HTML).")
    add_cli_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run_cli(args)
    except (ValueError, TypeError, FileNotFoundError, ImportError, ConnectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
