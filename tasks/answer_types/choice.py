"""`choice`: multiple choice (LogiQA's four options, or any number), answered with an option letter."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from functools import lru_cache

from core.config import AnswerKind, AnswerSection
from tasks.answer_types.base import Rule
from tasks.answer_types.marks import ANSWER_PHRASE, sentence

LETTERS = tuple(string.ascii_uppercase)
_NON_WORD = re.compile(r"[\W_]+")
_OPTION_WORD = re.compile(r"(?i)^(?:option|choice)\s*")
# A 0-based option index as data sets write it ("1", not "01").
_INDEX = re.compile(r"0|[1-9][0-9]?")


class _Patterns:
    """The regexes for one set of option letters ("A".."D", "A".."E" ...), built once per set."""

    __slots__ = ("after_marker", "is_correct", "leading", "paren")

    def __init__(self, last: str):
        up, low = f"A-{last}", f"a-{last.lower()}"
        # An option letter right after a marker: "B", "(B)", "option C", "choice (d)", "b." at a line end.
        self.after_marker = re.compile(
            rf"^[\s:*\"'_]*(?:(?i:option|choice)\s*)?"
            rf"(?:[(\[]([{up}{low}])[)\]]|([{up}])(?![A-Za-z])|([{low}])(?=[.):]?\s*(?:$|\n)))"
        )
        # "Option C is correct", "(B) is the right answer", "B is the best choice".
        self.is_correct = re.compile(
            rf"(?:\b(?i:option|choice)\s*)?(?:\(([{up}])\)|\b([{up}])\b)\s+is\s+(?:the\s+)?(?:correct|right|best)\b"
        )
        self.paren = re.compile(rf"\(([{up}])\)")
        # "B. <option text>" at the very start; "(A) is wrong, ..." is an enumeration, not an answer.
        self.leading = re.compile(rf"^[\s*\"'_]*([{up}])(?:[).:]|\s*$)")


@lru_cache(maxsize=26)
def _patterns(last: str) -> _Patterns:
    return _Patterns(last)


class ChoiceAnswer(Rule):
    """Option letters "A", "B", ...: `n_options` of them, or (unset) as many as the question lists.

    A gold answer may be a letter ("b", "(B)", "Option B"), a 0-based index (1 -> "B"),
    or, given the options, an option's text.
    """

    __slots__ = ("_n",)
    kind: AnswerKind = "choice"

    def __init__(self, n_options: int | None = None):
        self._n = n_options

    @classmethod
    def from_section(cls, section: AnswerSection) -> ChoiceAnswer:
        """The type with `section`'s number of options."""
        return cls(section.n_options)

    def letters(self, options: Sequence[str] = ()) -> tuple[str, ...]:
        """The letters a question's options take: `n_options` of them, else one per option, else all 26."""
        return LETTERS[: self._n or len(options) or len(LETTERS)]

    def normalize(self, value: str, options: Sequence[str] = ()) -> str | None:
        """The option letter `value` names (a letter, "(C)", "Option D" or a 0-based index), else None."""
        letters = self.letters(options)
        word = _OPTION_WORD.sub("", value.strip().strip(" .*\"'")).strip("()[] ")
        if _INDEX.fullmatch(word):
            return letters[int(word)] if int(word) < len(letters) else None
        return word.upper() if word.upper() in letters else None

    def gold(self, raw: object, options: Sequence[str] = ()) -> str:
        """The gold letter from a letter, a 0-based index or an option's text; raises ValueError otherwise."""
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            raise ValueError(f"expected an option letter or index, got {type(raw).__name__}")
        gold = self.normalize(str(raw), options)
        if gold is None and isinstance(raw, str):
            texts = [_NON_WORD.sub(" ", o.lower()).strip() for o in options]
            said = _NON_WORD.sub(" ", raw.lower()).strip()
            if said and texts.count(said) == 1:
                gold = LETTERS[texts.index(said)]
        if gold is None:
            letters = self.letters(options)
            raise ValueError(f"expected an option letter {letters[0]}..{letters[-1]} or its index, got {raw!r}")
        return gold

    def extract(self, text: str, options: Sequence[str] = ()) -> str | None:
        """The chosen option's letter, or None.

        After the last answer marker, the text of one of `options` or else a letter;
        else "option C is correct"; else a leading letter ("B. ..."); else the last
        "(B)"; else the one option whose text the reply quotes.
        """
        letters = self.letters(options)
        found = _patterns(letters[-1])
        for m in reversed(list(ANSWER_PHRASE.finditer(text))):
            # The option's text first: many options start with "A " ("A city's GDP ...").
            quoted = _quoted(sentence(text[m.end() :]), options, letters)
            if quoted:
                return quoted[0]
            letter = found.after_marker.match(text[m.end() :])
            if letter:
                return next(g for g in letter.groups() if g).upper()
        stated = list(found.is_correct.finditer(text))
        if stated:
            return next(g for g in stated[-1].groups() if g)
        leading = found.leading.match(text)
        if leading:
            return leading.group(1)
        parens = found.paren.findall(text)
        if parens:
            return parens[-1]
        quoted = _quoted(text, options, letters)
        return quoted[0] if len(quoted) == 1 else None

    def correct(self, predicted: str | None, gold: str, options: Sequence[str] = (), *, sample_id: str = "") -> bool:
        """Whether both name the same option."""
        if predicted is None:
            return False
        p = self.normalize(predicted, options)
        return p is not None and p == self.normalize(gold, options)

    def hint(self, gold: str, options: Sequence[str] = ()) -> str:
        """ "(B) <option text>" when the options are known, else the letter."""
        letters = self.letters(options)
        if gold in letters and letters.index(gold) < len(options):
            return f"({gold}) {options[letters.index(gold)]}"
        return gold

    def written(self, answer: str) -> str:
        """ "(B)"."""
        return f"({answer})"

    def wrong(self, gold: str, options: Sequence[str] = ()) -> str:
        """The next option's letter, wrapping round."""
        letters = self.letters(options)
        return letters[(letters.index(gold) + 1) % len(letters)] if gold in letters else letters[0]


def _quoted(span: str, options: Sequence[str], letters: Sequence[str]) -> list[str]:
    """Letters of the options whose text `span` quotes, longest option first."""
    haystack = " " + _NON_WORD.sub(" ", span.lower()) + " "
    lowered = {letter.lower() for letter in letters}
    hits = []
    for letter, option in zip(letters, options, strict=False):
        needle = _NON_WORD.sub(" ", option.lower()).strip()
        # A short option ("G", "4") counts only when it is all the span says, and never
        # when it reads as an option letter: "(B)" is option B even if option A is "B".
        if len(needle) >= 3:
            quoted = f" {needle} " in haystack
        else:
            quoted = needle != "" and needle not in lowered and haystack.strip() == needle
        if quoted:
            hits.append((len(needle), letter))
    # Longest first: an option may be a substring of another one.
    return [letter for _, letter in sorted(hits, reverse=True)]
