"""The `rlddm` command line.

Users' commands sit at the top (simulate, demo, infer, check, group, fit-exact, train, adapt, export,
diagnose, compare, power); the maintainers' validation, report and benchmark commands under
`rlddm validate`. Each family of commands is a module (simulate, inference, networks,
validate) that adds its parsers and runs each command by calling the library and printing;
the options they share are in `options`.
"""

import argparse
import sys

from ..data.io import DataError
from . import inference, networks, simulate, validate
from .options import common_options

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The `rlddm` parser: every command, each with its options and the function that runs it."""
    parser = argparse.ArgumentParser(prog="rlddm", description="Amortized Bayesian inference for RL-DDMs.")
    common = common_options()
    subparsers = parser.add_subparsers(dest="command", required=True)
    for family in (simulate, inference, networks, validate):
        family.add_commands(subparsers, common)
    return parser


def main(argv=None) -> int:
    """Run the command of `argv` (default: the process's arguments); 0 when it succeeds, 2 with
    the error on stderr when the user's data or options are at fault."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (DataError, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"{args.prog}: error: {err}", file=sys.stderr)
        return 2
    return 0
