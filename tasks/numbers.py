"""Numbers as they appear in math answers: find them in free text, write them canonically.

Exact arithmetic (`Fraction`) all the way, so "1,200.50" and "2401/2" both become
"1200.5" and a 12-digit GSM8K answer never loses a digit to float rounding.
"""

from __future__ import annotations

import re
from decimal import Decimal, localcontext
from fractions import Fraction

# One number as written in an answer: an optional sign (ASCII or Unicode minus), an
# optional currency sign on either side of it, thousands groups, decimals, an optional
# fraction bar and an optional percent sign. `1,2` is two numbers (the comma is not a
# thousands separator unless three digits follow it).
_NUMBER = re.compile(
    r"""
    (?<![\w.])                              # not glued to a word or a preceding number
    (?P<sign>[-\u2212])?[$\u20ac\u00a3]?\s?(?P<sign2>[-\u2212])?
    (?P<int>\d{1,3}(?:,\d{3})+|\d+)?
    (?P<frac>\.\d+)?
    (?:\s?/\s?(?P<den>\d+(?:\.\d+)?)(?![\d,]))?
    (?P<pct>\s?%)?
    """,
    re.VERBOSE,
)
# LaTeX fractions inside \boxed{} and the like: \frac{3}{4}, \dfrac{3}{4}, \tfrac34.
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*([^{}]+?)\s*\}\s*\{\s*([^{}]+?)\s*\}|\\[dt]?frac\s*(\d)(\d)")
# Decimal places kept for a non-terminating value such as 1/3; far below the 1e-4 grading tolerance.
_PLACES = 10
# A longer digit run is a model looping, not an answer; it is read as no number at all,
# because Python refuses to print an int of more than 4300 digits.
_MAX_DIGITS = 1000


def find_numbers(text: str) -> list[Fraction]:
    """Every number in `text`, in order.

    `3/4` is the value 0.75, `25%` is 25 (GSM8K writes percentages as plain numbers),
    `$1,200.50` is 1200.5 and `-$5`, `$-5` and `\u22125` are all -5.
    """
    text = _LATEX_FRAC.sub(lambda m: f"{m.group(1) or m.group(3)}/{m.group(2) or m.group(4)}", text)
    found: list[Fraction] = []
    for m in _NUMBER.finditer(text):
        if m.group("int") is None and m.group("frac") is None:
            continue
        if sum(c.isdigit() for c in m.group(0)) > _MAX_DIGITS:
            continue
        value = Fraction(Decimal((m.group("int") or "0").replace(",", "") + (m.group("frac") or "")))
        if m.group("den") is not None:
            den = Fraction(Decimal(m.group("den")))
            if den == 0:
                continue
            value /= den
        if m.group("sign") or m.group("sign2"):
            value = -value
        found.append(value)
    return found


def parse_number(text: str) -> Fraction | None:
    """The single number that `text` holds ("72", "-3.5", "$1,200", "3/4", "72.0"), else None.

    Surrounding words are allowed ("72 dollars", "about 5 km") as long as exactly one
    number is present; anything with two or more numbers is ambiguous and gives None.
    """
    numbers = find_numbers(text)
    return numbers[0] if len(numbers) == 1 else None


def canonical(value: Fraction) -> str:
    """The one way we write a number: "72", "0.75", "-3", "0.3333333333" (rounded to 10 places)."""
    if value.denominator == 1:
        return str(value.numerator)
    # Enough precision for every integer digit plus the kept places: the default 28
    # digits would make quantize fail on a value such as 12345678901234567890.5.
    with localcontext() as ctx:
        ctx.prec = len(str(abs(value.numerator) // value.denominator)) + _PLACES + 2
        exact = Decimal(value.numerator) / Decimal(value.denominator)
        text = format(exact.quantize(Decimal(1).scaleb(-_PLACES)).normalize(), "f")
    return "0" if text in ("-0", "0") else text
