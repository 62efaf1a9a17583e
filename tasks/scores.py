"""Peer-review scores: the 1-5 number a reviewing teacher puts at the end of its answer."""

from __future__ import annotations

import re
from decimal import Decimal

import msgspec

from core.calls import ReviewScore

# A score, possibly written against its scale: "4", "4.0", "4/5", "4 out of 5".
_SCORE = re.compile(r"(-?\d+(?:\.\d+)?)(?:\s*(?:/|out\s+of)\s*\d+(?:\.\d+)?)?", re.IGNORECASE)
_BRACKETED = re.compile(r"\[([^\[\]]*)\]")


def parse_score(text: str) -> int | None:
    """The review score in `text`, or None when there is no valid one.

    The last bracketed number wins (`[4]`, `[ 4 ]`, `[4/5]`, `[4.0]`, `[Score: 4]`);
    brackets without a number (`[Rationale]`) are passed over; with no bracketed
    number at all, the last number in the text (`Score: 4/5` gives 4, not 5). As in
    the FAIR authors' code, a score outside 1..5 is invalid; so is a fractional one
    (`[4.5]`), which the paper's integer scale does not have.

    >>> parse_score("Sound steps, one slip in the units. [4/5]")
    4
    """
    score: str | None = None
    for inner in reversed(_BRACKETED.findall(text)):
        found: list[str] = _SCORE.findall(inner)  # one group: the number
        if found:
            score = found[-1]
            break
    if score is None:
        found = _SCORE.findall(text)
        if not found:
            return None
        score = found[-1]
    value = Decimal(score)
    if value != value.to_integral_value() or not 1 <= value <= 5:
        return None
    return int(value)


_review_decoder = msgspec.json.Decoder(ReviewScore)


def parse_structured_score(text: str) -> int | None:
    """The score of a structured review (the `ReviewScore` JSON an adapter returns), or None.

    None when the JSON is cut or malformed (a max_tokens stop mid-object) or the score is
    outside 1..5: a schema guarantees the shape, not that the answer was finished.

    >>> parse_structured_score('{"reasoning": "Sound.", "score": 5}')
    5
    """
    try:
        score = _review_decoder.decode(text).score
    except msgspec.DecodeError:
        return None
    return score if 1 <= score <= 5 else None


def review_score(text: str, *, structured: bool) -> int | None:
    """A review's score: from its `ReviewScore` JSON when asked for structured output, else the brackets."""
    return parse_structured_score(text) if structured else parse_score(text)
