"""The marks a reply puts before its final answer: "The answer is", "#### 72", `\\boxed{}`.

Extraction prefers an explicit answer marker over anything else in the text, because
models work through other numbers and options on the way to their answer.
"""

from __future__ import annotations

import re

# "The answer is", "Final answer:", "answer would be", "Answer =" ...; what follows is the answer.
ANSWER_PHRASE = re.compile(
    r"\banswer\b\s*(?:to\s+(?:the|this)\s+(?:question|problem)\s+)?"
    r"(?:is|would\s+be|will\s+be|should\s+be|[:=])\s*(?:[:=]\s*)?",
    re.IGNORECASE,
)
HASHES = re.compile(r"####\s*")
# A marker's answer ends at the end of its sentence or line.
_SENTENCE_END = re.compile(r"\n|\.(?=\s|$)")
_BOX = {name: re.compile(rf"\\{name}\s*\{{") for name in ("boxed", "fbox")}


def sentence(text: str) -> str:
    """The answer's sentence: `text` up to the end of its first sentence or line."""
    text = text.lstrip()
    end = _SENTENCE_END.search(text)
    return text if end is None else text[: end.start()]


def boxed_contents(text: str, commands: tuple[str, ...] = ("boxed",)) -> list[str]:
    """The contents of every `\\boxed{...}` (or other `commands`) in order, braces balanced (`\\boxed{\\frac{3}{4}}`).

    A box whose braces never close (a reply cut at max_tokens) is left out.
    """
    found: list[tuple[int, str]] = []
    for command in commands:
        for m in _BOX[command].finditer(text):
            depth, i = 1, m.end()
            while i < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
            if depth == 0:
                found.append((m.start(), text[m.end() : i - 1]))
    return [content for _, content in sorted(found)]


def marked(text: str, boxes: tuple[str, ...] = ("boxed",)) -> list[list[str]]:
    """The spans a reply marks as its answer, most trusted kind first: every box (`\\boxed{}`), every "####"
    sentence, every answer phrase's sentence (each kind in the reply's order; callers take the last that reads)."""
    return [
        boxed_contents(text, boxes),
        [sentence(text[m.end() :]) for m in HASHES.finditer(text)],
        [sentence(text[m.end() :]) for m in ANSWER_PHRASE.finditer(text)],
    ]
