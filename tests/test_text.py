"""The text normaliser shared by data preparation, training and scoring."""

import pytest

from asr.text import ALPHABET, is_clean, normalize, number_to_words


@pytest.mark.parametrize("raw, expected", [
    ("Hello, World!", "hello world"),
    ("It's 3.5% of $20.", "it's three point five percent of twenty dollars"),
    ("In 1984 and 2005", "in nineteen eighty four and two thousand five"),
    ("1,234 people", "one thousand two hundred thirty four people"),
    ("1,000,000", "one million"),
    ("the 1990s", "the nineteen nineties"),
    ("$5.50", "five dollars and fifty cents"),
    ("$1", "one dollar"),
    ("version 2.0.1", "version two point zero point one"),
    ("-5 degrees", "minus five degrees"),
    ("the 21st time", "the twenty first time"),
    ("007", "zero zero seven"),
    ("#1 hit", "number one hit"),
    ("Café au lait", "cafe au lait"),
    ("\u2018quoted\u2019 rock'n'roll", "quoted rock'n'roll"),
    ("salt & pepper", "salt and pepper"),
    ("   ", ""),
    ("In 1984 the 21st", "in nineteen eighty four the twenty first"),
    ("Café  au   lait", "cafe au lait"),
    ("'Tis the season -- really.", "tis the season really"),
])
def test_normalize_examples(raw, expected):
    assert normalize(raw) == expected


def test_normalize_is_idempotent_and_in_alphabet():
    for raw in ["Hello, World! 42 times -- 3.14 $9.99", "A-B-C", "x = y + 1 @ noon", "1990s' 1st"]:
        once = normalize(raw)
        assert normalize(once) == once
        assert set(once) <= set(ALPHABET)
        assert "  " not in once


def test_number_to_words():
    assert number_to_words(0) == "zero"
    assert number_to_words(115) == "one hundred fifteen"
    assert number_to_words(1001) == "one thousand one"
    assert number_to_words(1905, year=True) == "nineteen oh five"
    assert number_to_words(1900, year=True) == "nineteen hundred"
    assert number_to_words(10**16 + 2) == "ten thousand trillion two"  # above the largest scale word
    assert normalize("10,000,000,000,000,000") == "ten thousand trillion"


def test_is_clean():
    assert is_clean("Hello there, friend.")
    assert not is_clean("Call 911")
    assert not is_clean("...")
