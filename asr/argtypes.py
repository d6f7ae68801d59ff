"""``argparse`` value types shared by the commands of both layers.

A value they refuse becomes argparse's own error, which :mod:`asr.cli` prints as one
line naming the option (``asr transcribe: error: argument --chunk-ms: ...``), exit
status 2, before any model is loaded.
"""

from __future__ import annotations

import argparse
import math

__all__ = ["positive_float", "finite_float", "non_negative_int", "parser_type"]


def _number(text: str, convert):
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def positive_float(text: str) -> float:
    """A finite number above 0 (sizes and durations: ``inf`` and ``nan`` are refused)."""
    x = _number(text, float)
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f"must be a positive, finite number, got {text!r}")
    return x


def finite_float(text: str) -> float:
    """Any finite number (weights: ``inf`` and ``nan`` are refused)."""
    x = _number(text, float)
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return x


def non_negative_int(text: str) -> int:
    """An integer of 0 or more (``--threads``: 0 means the default)."""
    n = _number(text, int)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return n


def parser_type(parse, name: str):
    """An argparse type from ``parse(text)``, whose ``ValueError`` becomes argparse's one-line
    error; ``name`` is what argparse calls the value in its other messages."""
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = name
    return convert
