"""Errors shared by the commands of both layers (``asr`` and ``streaming``).

They live here, not in :mod:`asr.cli`, so a command module never imports the CLI
that dispatches to it.
"""

from __future__ import annotations

__all__ = ["CLIError"]


class CLIError(Exception):
    """An expected failure of a command: printed as one line, exit status 1."""
