"""`boolean`: yes/no questions (StrategyQA), answered true/false, yes/no or the task's own synonyms."""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.config import AnswerKind, AnswerSection
from tasks.answer_types.base import Rule
from tasks.answer_types.marks import ANSWER_PHRASE

# The question's own instruction echoed back ('answer "true" or "false"'): a choice offered, not made.
_ECHO = re.compile(r"[\"'*]?\b(?:true|false)\b[\"'*]?\s*(?:or|/)\s*[\"'*]?\b(?:true|false)\b[\"'*]?", re.IGNORECASE)


class _Patterns:
    """The regexes for one vocabulary, built once per vocabulary."""

    __slots__ = ("after_marker", "anywhere", "leading")

    def __init__(self, words: tuple[str, ...], fallback: tuple[str, ...]):
        # Longest first, so "not true" is read before "true" when both are synonyms.
        either = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
        self.after_marker = re.compile(rf"^[\s:*\"'(\[_]*({either})\b", re.IGNORECASE)
        self.leading = re.compile(rf"^[\W_]*({either})\b", re.IGNORECASE)
        self.anywhere = re.compile(
            rf"\b({'|'.join(re.escape(w) for w in sorted(fallback, key=len, reverse=True))})\b", re.IGNORECASE
        )


class BooleanAnswer(Rule):
    """ "true" / "false". `true_words` / `false_words` add synonyms to true, yes / false, no ("supported", "refuted").

    Extraction: after the last answer phrase, else at the very start, else the last
    standalone true/false or synonym anywhere. Plain yes/no count only after a marker or
    at the start: "there is no evidence" says nothing about the answer.
    """

    __slots__ = ("_found", "_words")
    kind: AnswerKind = "boolean"

    def __init__(self, true_words: Sequence[str] = (), false_words: Sequence[str] = ()):
        words = {"true": "true", "yes": "true", "false": "false", "no": "false"}
        words |= {w.strip().lower(): "true" for w in true_words}
        words |= {w.strip().lower(): "false" for w in false_words}
        self._words = words
        # The vocabulary is fixed here, so its patterns are compiled once.
        self._found = _Patterns(tuple(words), tuple(w for w in words if w not in ("yes", "no")))

    @classmethod
    def from_section(cls, section: AnswerSection) -> BooleanAnswer:
        """The type with `section`'s synonyms."""
        return cls(section.true_words or (), section.false_words or ())

    def normalize(self, value: str) -> str | None:
        """ "true"/"false" for a word of the vocabulary (any case, a trailing period or quotes), else None."""
        return self._words.get(" ".join(value.strip().strip(" .!*\"'").lower().split()))

    def gold(self, raw: object, options: Sequence[str] = ()) -> str:
        """The gold "true"/"false" from a bool, the integer 1 or 0, or a word of the vocabulary; else ValueError."""
        if isinstance(raw, bool) or (isinstance(raw, (int, float)) and raw in (0, 1)):
            # Data sets label with bools or with 1/0: ints from JSON or Parquet, floats from a Parquet column with gaps.
            return "true" if raw else "false"
        if isinstance(raw, str) and raw.strip() in ("0", "1"):
            # The same 1/0 label read from a CSV file, where every cell is text.
            return "true" if raw.strip() == "1" else "false"
        gold = self.normalize(str(raw)) if isinstance(raw, (str, int, float)) else None
        if gold is None:
            raise ValueError(f"expected true/false or yes/no, got {str(raw)[:40]!r}")
        return gold

    def extract(self, text: str, options: Sequence[str] = ()) -> str | None:
        """The answer after the last answer phrase, else a leading word, else the last true/false in the text."""
        found = self._found
        text = _ECHO.sub(" ", text)
        for m in reversed(list(ANSWER_PHRASE.finditer(text))):
            word = found.after_marker.match(text[m.end() :])
            if word:
                return self._read(word.group(1))
        leading = found.leading.match(text)
        if leading:
            return self._read(leading.group(1))
        words = found.anywhere.findall(text)
        return self._read(words[-1]) if words else None

    def correct(self, predicted: str | None, gold: str, options: Sequence[str] = (), *, sample_id: str = "") -> bool:
        """Whether both read as the same truth value."""
        if predicted is None:
            return False
        p = self.normalize(predicted)
        return p is not None and p == self.normalize(gold)

    def wrong(self, gold: str, options: Sequence[str] = ()) -> str:
        """The other truth value."""
        return "false" if self.normalize(gold) == "true" else "true"

    def _read(self, word: str) -> str:
        return self._words[" ".join(word.lower().split())]
