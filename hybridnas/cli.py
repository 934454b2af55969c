"""The ``hybridnas`` command line.

Each room of the package adds its own subcommands through a ``register``
function in its ``cli`` module (listed in ``COMMAND_MODULES``), so the
search, latency, export and dashboard code owns its flags and help.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import USER_ERRORS

COMMAND_MODULES = [
    "hybridnas.models_cli",
    "hybridnas.spaces.cli",
    "hybridnas.search.cli",
    "hybridnas.search.fidelity_cli",
    "hybridnas.latency.cli",
    "hybridnas.export.cli",
    "hybridnas.training_cli",
    "hybridnas.dashboard.cli",
    "hybridnas.runs_cli",
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="hybridnas",
        description="Neural architecture search over hybrid CNN/Transformer design spaces.",
    )
    parser.add_argument("--version", action="version", version=f"hybridnas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


_python_format_warning = None  # warnings.formatwarning before main() replaced it


def _one_line(message: object) -> str:
    """The README promises one line per error, whatever a message holds."""
    return " ".join(str(message).split())


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Our own warnings (e.g. a trials table read from its CSV copy) as one
    ``hybridnas: warning:`` line; other libraries' in Python's usual form."""
    if category.__module__.startswith("hybridnas"):
        return f"hybridnas: warning: {_one_line(message)}\n"
    return _python_format_warning(message, category, filename, lineno, line)


def main(argv: list[str] | None = None) -> int:
    import warnings

    global _python_format_warning
    if warnings.formatwarning is not _format_warning:
        _python_format_warning, warnings.formatwarning = warnings.formatwarning, _format_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    if args.command == "search":
        # the search reaches export and dashboard only through these callbacks
        from .app import run_search, search_hooks

        # (a dry run writes nothing: it spares their imports)
        args.hooks = None if getattr(args, "dry_run", False) else search_hooks()
        args.run_search = run_search  # picks the strategy (trials or oneshot)
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
