"""The ``xrl`` command: every main job of xrl from an installed package, in any folder.

::

    xrl info                                   versions, bundled models (load_pretrained names)
    xrl report                                 one folder, one index.html: every capability on bundled defaults
    xrl cfrl mnist | adult                     counterfactuals with RL (seeds 000 / 001)
    xrl agents train | evaluate                train an IMPALA PPO agent (resumable) / evaluate and bundle it
    xrl vision interface | walkthrough         the Understanding-RL-Vision interface / the seed-003 figures
    xrl worldmodel train | explain             a DreamerV2 world model / its latent explanations (seed 002)

Each subcommand has ``--help``; those that run a job take ``--out``, ``--seed``, ``--device``, ``--threads`` and
``--quick`` (a smoke test of about a minute or less). A job prints one JSON line (its summary) on stdout and its
progress on stderr. One module per job group; each is a thin layer over :mod:`xrl.jobs` / :mod:`xrl.report`.
"""
from __future__ import annotations

import argparse
import sys

from . import agents, cfrl, info, report, vision, worldmodel

GROUPS = (info, report, cfrl, agents, vision, worldmodel)


def build_parser() -> argparse.ArgumentParser:
    """The ``xrl`` argument parser with every subcommand."""
    import xrl

    ap = argparse.ArgumentParser(prog="xrl", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Run `xrl <command> --help` for a command's options. Docs: README.md, docs/.")
    ap.add_argument("--version", action="version", version=f"xrl {xrl.__version__}")
    ap.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xrl`` console script; returns the exit status."""
    from ..distributed._cluster import WorkerError   # no Ray import

    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)   # recorded next to what a job writes
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, ImportError, ConnectionError, WorkerError) as exc:
        # user errors (bad input, a missing extra, an unreachable cluster, a failing worker): one clear line
        if args.debug:
            raise
        print(f"xrl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
