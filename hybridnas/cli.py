"""The ``hybridnas`` command line.

Each room of the package adds its own subcommands through a ``register``
function in its ``cli`` module (listed in ``COMMAND_MODULES``), so the
search, latency, export and dashboard code owns its flags and help.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import USER_ERRORS

COMMAND_MODULES = [
    "hybridnas.models_cli",
    "hybridnas.spaces.cli",
    "hybridnas.search.cli",
    "hybridnas.latency.cli",
    "hybridnas.export.cli",
    "hybridnas.training_cli",
    "hybridnas.dashboard.cli",
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="hybridnas",
        description="Neural architecture search over hybrid CNN/Transformer design spaces.",
    )
    parser.add_argument("--version", action="version", version=f"hybridnas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    here = os.path.dirname(__file__)
    for name in COMMAND_MODULES:
        rel = name.split(".", 1)[1].replace(".", os.sep)
        if not (os.path.exists(os.path.join(here, rel + ".py"))
                or os.path.exists(os.path.join(here, rel, "__init__.py"))):
            continue  # room not built yet
        importlib.import_module(name).register(sub)
    return parser


def _one_line(message: object) -> str:
    """The README promises one line per error, whatever a message holds."""
    return " ".join(str(message).split())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        print(f"hybridnas {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyError as e:  # unknown names from registries carry a full sentence
        msg = e.args[0] if e.args else str(e)
        print(f"hybridnas {args.command}: error: {_one_line(msg)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hybridnas {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
