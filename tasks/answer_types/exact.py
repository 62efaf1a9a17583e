"""`exact`: short free-text answers (a name, a word, a code) compared after normalisation."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from core.config import AnswerKind, AnswerSection
from tasks.answer_types.base import Rule
from tasks.answer_types.marks import marked

# SQuAD's normalisation drops these articles (its official evaluation script, `normalize_answer`).
_ARTICLES = re.compile(r"\b(?:a|an|the)\b", re.IGNORECASE)
# Wrapping a reply puts around its answer: quotes, bold, brackets, a closing period.
_WRAPPING = " \t*_\"'`\u201c\u201d\u2018\u2019.,;:!?()[]"


class ExactAnswer(Rule):
    """The answer as written, compared after normalising both sides.

    Defaults: case, punctuation and the articles a/an/the are ignored; whitespace runs
    always count as one space. `pattern` (a regex; its one group, else the whole match)
    finds the answer in a reply, the last match winning; without it the answer is the
    last `\\boxed{}`, else what follows the last "####" or answer phrase up to the end
    of its sentence, else the reply's last non-empty line.
    """

    __slots__ = ("_articles", "_case", "_pattern", "_punctuation")
    kind: AnswerKind = "exact"

    def __init__(
        self,
        *,
        case_sensitive: bool = False,
        ignore_punctuation: bool = True,
        ignore_articles: bool = True,
        pattern: str | None = None,
    ):
        self._case = case_sensitive
        self._punctuation = ignore_punctuation
        self._articles = ignore_articles
        self._pattern = None if pattern is None else re.compile(pattern)

    @classmethod
    def from_section(cls, section: AnswerSection) -> ExactAnswer:
        """The type with `section`'s normalisation and pattern."""
        return cls(
            case_sensitive=bool(section.case_sensitive),
            ignore_punctuation=section.ignore_punctuation is not False,
            ignore_articles=section.ignore_articles is not False,
            pattern=section.pattern,
        )

    def normalize(self, value: str) -> str:
        """`value` as compared: case folded, punctuation and articles dropped as configured, spaces collapsed."""
        text = unicodedata.normalize("NFKC", value)
        if not self._case:
            text = text.casefold()
        if self._punctuation:
            text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
        if self._articles:
            text = _ARTICLES.sub(" ", text)
        return " ".join(text.split())

    def gold(self, raw: object, options: Sequence[str] = ()) -> str:
        """The gold answer as written, stripped; raises ValueError when it normalises to nothing."""
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise ValueError(f"expected text, got {type(raw).__name__}")
        gold = str(raw).strip()
        if not self.normalize(gold):
            raise ValueError(f"no answer left after normalisation in {gold[:40]!r}")
        return gold

    def extract(self, text: str, options: Sequence[str] = ()) -> str | None:
        """The reply's final answer as written (see the class), or None."""
        if self._pattern is not None:
            matches = list(self._pattern.finditer(text))
            if not matches:
                return None
            found = matches[-1].group(1 if self._pattern.groups else 0)
            return _unwrapped(found) or None if found else None
        for spans in marked(text):
            for span in reversed(spans):
                answer = _unwrapped(span)
                if answer:
                    return answer
        lines = [line for line in (_unwrapped(line) for line in text.splitlines()) if line]
        return lines[-1] if lines else None

    def correct(self, predicted: str | None, gold: str, options: Sequence[str] = (), *, sample_id: str = "") -> bool:
        """Whether both sides normalise to the same non-empty text."""
        if predicted is None:
            return False
        p = self.normalize(predicted)
        return bool(p) and p == self.normalize(gold)

    def wrong(self, gold: str, options: Sequence[str] = ()) -> str:
        """`gold` with a word that makes it a different answer."""
        return f"not {gold}"


def _unwrapped(span: str) -> str:
    return span.strip().strip(_WRAPPING).strip()
