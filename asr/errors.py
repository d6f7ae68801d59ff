"""Errors shared by the commands of both layers (``asr`` and ``streaming``).

They live here, not in :mod:`asr.cli`, so a command module never imports the CLI
that dispatches to it.
"""

from __future__ import annotations

__all__ = ["CLIError", "OptionError"]


class CLIError(Exception):
    """An expected failure of a command: printed as one line, exit status 1."""


class OptionError(ValueError):
    """A setting out of range, found by a config dataclass's own checks (``__post_init__``):
    ``option`` names the field, ``problem`` says what is wrong (``"must be positive, got 0"``).
    A command that took the value from a flag reports it under the flag's name (:meth:`renamed`)."""

    def __init__(self, option: str, problem: str):
        super().__init__(f"{option} {problem}")
        self.option, self.problem = option, problem

    def renamed(self, name: str) -> "OptionError":
        return OptionError(name, self.problem)
