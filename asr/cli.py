"""Command line: ``asr <command> ...`` (also ``python -m asr``).

Each command lives in the module named after its stage and exposes
``register(subparsers)``; this file only dispatches and turns expected errors
into one-line messages with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> module providing register(subparsers); modules import lazily so `--help` stays quick
COMMANDS = {
    "transcribe": "asr.transcribe",
    "eval": "asr.evaluate",
    "train": "asr.train",
    "lm": "asr.lm",
    "serve": "streaming.server",
    "client": "streaming.client",
    "mic": "streaming.mic",
}


class CLIError(Exception):
    """An expected failure: printed as one line, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr", description="Streaming speech recognition (GRU-CTC).")
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


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .audio import AudioError
    from .checkpoint import ModelNotFoundError

    try:
        return int(args.func(args) or 0)
    except (CLIError, AudioError, ModelNotFoundError, ValueError, FileNotFoundError, OSError) as e:
        print(f"asr {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"asr {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
