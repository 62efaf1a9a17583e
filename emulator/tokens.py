"""The emulator's "real" tokenizer: deterministic, cheap, and deliberately not chars/4.

A token is a run of up to four word characters (longer words split into 4-char
pieces) or one punctuation character; whitespace is free. Its ratio to characters
depends on the text (short words cost more per char than long ones, digits and
symbols more still), so a client's chars-per-token estimate has an error that can
be calibrated and measured against it, as against a provider's BPE tokenizer.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable

# The possessive form (Python 3.11+) matches the same tokens about twice as fast: a
# piece never gives characters back, since the punctuation branch cannot match them.
_TOKEN = re.compile(r"\w{1,4}+|[^\w\s]" if sys.version_info >= (3, 11) else r"\w{1,4}|[^\w\s]")

# Chat framing per message (role and separators), as providers bill it: a few tokens.
MESSAGE_OVERHEAD_TOKENS = 3
# Priming of the assistant's turn, once per request.
REPLY_OVERHEAD_TOKENS = 3


def count_tokens(text: str) -> int:
    """Tokens in `text`: `count_tokens("Hello, world!") == 6` (Hell, o, ",", worl, d, "!")."""
    return len(_TOKEN.findall(text))


def count_prompt_tokens(messages: Iterable[tuple[str, str]]) -> int:
    """Prompt tokens of a chat: every message's text plus the framing each provider bills."""
    total = REPLY_OVERHEAD_TOKENS
    for _role, text in messages:
        total += MESSAGE_OVERHEAD_TOKENS + len(_TOKEN.findall(text))
    return total


def prompt_pieces(messages: Iterable[tuple[str, str]]) -> list[str]:
    """The prompt as a token sequence, each message led by a marker of its role (for prefix caching)."""
    pieces: list[str] = []
    for role, text in messages:
        pieces.append(f"<{role}>")
        pieces.extend(_TOKEN.findall(text))
    return pieces


def fit_tokens(text: str, max_tokens: int) -> tuple[str, int, bool]:
    """`text` cut after its first `max_tokens` tokens: (text, its token count, whether it was cut)."""
    pieces = _TOKEN.findall(text)
    if len(pieces) <= max_tokens:
        return text, len(pieces), False
    if max_tokens <= 0:
        return "", 0, True
    for index, match in enumerate(_TOKEN.finditer(text), 1):
        if index == max_tokens:
            return text[: match.end()], max_tokens, True
    raise AssertionError("unreachable: text has more than max_tokens tokens")
