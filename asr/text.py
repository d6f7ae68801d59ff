"""Text normalisation shared by data preparation, training and scoring.

One function, :func:`normalize`, maps free text to the alphabet the models are
trained on: lower-case ``a-z``, apostrophe and single spaces. Everything that
scores or trains goes through it, so a WER is always computed on the same
alphabet the model emits.

What is spelled out (so that no spoken word is silently dropped):

* integers (``42`` -> ``forty two``), with thousands separators (``1,000``);
  four-digit numbers from 1100 to 2099 that are not followed by a digit group
  read as years (``1984`` -> ``nineteen eighty four``);
* ordinals ``1st 2nd 3rd 4th ...`` -> ``first second third fourth``;
* decimals ``3.5`` -> ``three point five``;
* ``$5`` -> ``five dollars``, ``$5.50`` -> ``five dollars and fifty cents``, ``5%`` -> ``five percent``;
* ``1990s`` -> ``nineteen nineties``, ``-5`` -> ``minus five``, ``2.0.1`` -> ``two point zero point one``;
* ``&`` -> ``and``, ``+`` -> ``plus``, ``=`` -> ``equals``, ``@`` -> ``at``,
  ``#`` -> ``number`` (before a digit);
* accented letters are reduced to their base letter (``café`` -> ``cafe``).

Out of scope (documented, not guessed): abbreviations (``Dr.`` stays ``dr``),
Roman numerals, dates and times beyond the digits themselves, currencies other
than ``$``. Any other symbol becomes a word boundary. Use :func:`is_clean`
to keep only sentences that needed none of these rewrites, when exactness of
the reference matters more than coverage.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize", "number_to_words", "is_clean", "ALPHABET"]

#: Characters that can appear in normalised text.
ALPHABET = " 'abcdefghijklmnopqrstuvwxyz"

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]
_ORDINAL_IRREGULAR = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return words


def number_to_words(n: int, year: bool = False) -> str:
    """Spell a non-negative integer in English words.

    ``year=True`` reads 1100-2099 the way years are spoken
    (``1984`` -> ``nineteen eighty four``, ``2005`` -> ``two thousand five``).
    """
    if n < 0:
        return "minus " + number_to_words(-n)
    if year and 1100 <= n <= 2099 and not (2000 <= n <= 2009):
        hi, lo = divmod(n, 100)
        if lo == 0:
            return " ".join(_below_thousand(hi)) + " hundred"
        lo_words = _below_thousand(lo)
        if lo < 10:
            lo_words = ["oh"] + lo_words
        return " ".join(_below_thousand(hi) + lo_words)
    if n == 0:
        return "zero"
    words: list[str] = []
    for value, name in _SCALES:
        if n >= value:  # a thousand trillion and more: "one thousand trillion"
            words += number_to_words(n // value).split() + [name]
            n %= value
    if n:
        words += _below_thousand(n)
    return " ".join(words)


def _ordinal(n: int) -> str:
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        words[-1] = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _digits_to_words(digits: str) -> str:
    return " ".join(_ONES[int(d)] for d in digits)


_RE_GROUPED = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")
_RE_MONEY = re.compile(r"\$\s*(\d+)(?:\.(\d\d))?(?!\d)")
_RE_DOTTED = re.compile(r"\b\d+(?:\.\d+){2,}\b")
_RE_MINUS = re.compile(r"(?<![\w.])-(?=\d)")
_RE_PLURAL_NUMBER = re.compile(r"\b(\d+)'?s\b")
_RE_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
_RE_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_RE_DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")
_RE_NUMBER = re.compile(r"\d+")
_RE_HASH_NUMBER = re.compile(r"#\s*(?=\d)")
_SYMBOLS = {"&": " and ", "+": " plus ", "=": " equals ", "@": " at "}
_RE_NOT_ALPHABET = re.compile(r"[^a-z' ]+")
_RE_SPACES = re.compile(r"\s+")
# apostrophes that are quotation marks rather than part of a word
_RE_STRAY_APOSTROPHE = re.compile(r"(?<![a-z])'|'(?![a-z])")


def _number(match: re.Match) -> str:
    digits = match.group(0)
    if len(digits) > 15:
        return " " + _digits_to_words(digits) + " "
    if digits.startswith("0") and len(digits) > 1:
        return " " + _digits_to_words(digits) + " "
    return " " + number_to_words(int(digits), year=len(digits) == 4) + " "


def _decimal(match: re.Match) -> str:
    whole, frac = match.groups()
    return f" {number_to_words(int(whole))} point {_digits_to_words(frac)} "


def _money(match: re.Match) -> str:
    dollars, cents = int(match.group(1)), int(match.group(2) or 0)
    parts = []
    if dollars or not cents:
        parts.append(number_to_words(dollars) + (" dollar" if dollars == 1 else " dollars"))
    if cents:
        parts.append(number_to_words(cents) + (" cent" if cents == 1 else " cents"))
    return " " + " and ".join(parts) + " "


def _plural_number(match: re.Match) -> str:
    digits = match.group(1)
    words = number_to_words(int(digits), year=len(digits) == 4).split()
    last = words[-1]
    if last.endswith("y"):
        words[-1] = last[:-1] + "ies"
    elif last.endswith(("x", "s")):
        words[-1] = last + "es"
    else:
        words[-1] = last + "s"
    return " " + " ".join(words) + " "


def normalize(text: str) -> str:
    """Map free text to the model alphabet (lower-case a-z, apostrophe, space).

    >>> normalize("Hello, World! It's 3.5% of $20 in 1984 -- the 21st time.")
    "hello world it's three point five percent of twenty dollars in nineteen eighty four the twenty first time"
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    # grouped thousands are cardinals, never years: "1,234" -> one thousand two hundred thirty four
    text = _RE_GROUPED.sub(lambda m: " " + number_to_words(int(m.group(0).replace(",", ""))) + " ", text)
    text = _RE_MONEY.sub(_money, text)
    text = _RE_DOTTED.sub(lambda m: " " + " point ".join(_digits_to_words(p) if len(p) > 1 and p.startswith("0")
                                                          else number_to_words(int(p)) for p in m.group(0).split(".")) + " ", text)
    text = _RE_MINUS.sub(" minus ", text)
    text = _RE_PLURAL_NUMBER.sub(_plural_number, text)
    text = _RE_PERCENT.sub(lambda m: f" {m.group(1)} percent ", text)
    text = _RE_HASH_NUMBER.sub(" number ", text)
    text = _RE_ORDINAL.sub(lambda m: " " + _ordinal(int(m.group(1))) + " ", text)
    text = _RE_DECIMAL.sub(_decimal, text)
    text = _RE_NUMBER.sub(_number, text)
    for sym, word in _SYMBOLS.items():
        text = text.replace(sym, word)
    text = text.lower()
    text = _RE_NOT_ALPHABET.sub(" ", text)
    text = _RE_STRAY_APOSTROPHE.sub(" ", text)
    return _RE_SPACES.sub(" ", text).strip()


_RE_RAW_OK = re.compile(r"^[A-Za-z' ,.;:!?\"()\-]*$")


def is_clean(text: str) -> bool:
    """True when ``text`` needs no spelling-out: letters and punctuation only.

    Used to keep a "letters-only" subset whose references are exact.
    """
    return bool(_RE_RAW_OK.match(text)) and bool(normalize(text))
