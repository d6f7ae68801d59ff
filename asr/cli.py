"""Command line: ``asr <command> ...`` (also ``python -m asr``).

This is the composition root: each command lives in the module named after its stage
(the engine's in :mod:`asr`, the serving ones in :mod:`streaming`) and exposes
``register(subparsers)``. This file only dispatches, by module name in :data:`COMMANDS`
(the one place in :mod:`asr` that names :mod:`streaming`), and turns expected errors into
one-line messages: exit status 2 for a bad command line (argparse's errors, without the
usage text), 1 for a failure while running.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from .errors import CLIError

__all__ = ["main", "build_parser", "COMMANDS"]

# command -> module providing register(subparsers); modules import lazily so `--help` stays quick
COMMANDS = {
    "transcribe": "asr.transcribe",
    "eval": "asr.evaluate",
    "train": "asr.train",
    "lm": "asr.lm",
    "serve": "streaming.serve",
    "client": "streaming.client",
    "mic": "streaming.mic",
}


class _UsageError(Exception):
    """A bad command line; the message is the whole line to print."""


class _Parser(argparse.ArgumentParser):
    """argparse's errors as one line (``asr transcribe: error: argument --chunk-ms: ...``);
    sub-command parsers inherit this class."""

    def error(self, message):
        raise _UsageError(f"{self.prog}: error: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="asr", description="Streaming speech recognition (GRU-CTC).")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue  # command not built in this version
            raise
        mod.register(sub)
    return parser


def _warning_printer(command: str, default):
    """Show audio warnings (e.g. a truncated file) as one line, others as Python does."""
    from .audio import AudioWarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, AudioWarning):
            print(f"asr {command}: warning: {message}", file=sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        print(e, file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .audio import AudioError, AudioWarning
    from .checkpoint import ModelNotFoundError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", AudioWarning)
            warnings.showwarning = _warning_printer(args.command, warnings.showwarning)
            return int(args.func(args) or 0)
    except _UsageError as e:  # a command that checks its arguments with its parser's error()
        print(e, file=sys.stderr)
        return 2
    except (CLIError, AudioError, ModelNotFoundError, ValueError, FileNotFoundError, OSError) as e:
        print(f"asr {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"asr {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
