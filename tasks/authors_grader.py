"""The FAIR authors' grading (`cleanup` in their test.py and infer_student_wrong.py), per task.

`[[datasets]] grader = "authors"` grades the student this way, so accuracies compare like
for like with the paper's tables; the default `committee` grader (`tasks.answers`) reads
more answer phrasings and compares numbers numerically. Their rules, reproduced:

- GSM8K, SVAMP: after the first of "\\nAnswer" / "Therefore, the answer is" in the
  stripped reply, the first number, else the reply's last number (commas removed,
  trailing "." stripped); compared as a *string* with the gold ("72" is not "72.0").
- StrategyQA: "true" if the lower-cased reply contains "true" anywhere, else "false" if
  it contains "false"; an echo of the question's `answer "true" or "false"` counts.
- LogiQA: the text between "Answer:" and "Rationale:" (greedy, so the last of each);
  the first option whose text appears there, as its index "0".."3".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.config import TaskName
from tasks.answers import LETTERS
from tasks.family import family

_NUMBER = re.compile(r"-?\d+\.?\d*")
_LOGIQA = re.compile(r"(.*)Answer:(.*)Rationale:(.*)", re.DOTALL)


def authors_final_answer(task: TaskName, text: str, options: Sequence[str] = ()) -> str | None:
    """The final answer the authors' `cleanup` extracts from `text`, in their form, or None.

    Math: the number as written ("72", "72.50"); StrategyQA: "true"/"false"; LogiQA: "0".."3".
    """
    fam = family(task)
    if fam == "math":
        reply = text.strip()
        for prefix in ("\nAnswer", "Therefore, the answer is"):
            if prefix in reply:
                numbers = [n.strip(".") for n in _NUMBER.findall(reply.split(prefix)[1].strip().replace(",", ""))]
                return numbers[0] if numbers else None
        numbers = [n.strip(".") for n in _NUMBER.findall(reply.replace(",", ""))]
        return numbers[-1] if numbers else None
    if fam == "strategyqa":
        lowered = text.lower()
        return "true" if "true" in lowered else "false" if "false" in lowered else None
    match = _LOGIQA.search(text)
    if match is None:
        return None
    said = match.group(2)
    return next((str(k) for k, option in enumerate(options) if option in said), None)


def authors_gold(task: TaskName, gold: str, gold_text: str = "") -> str:
    """The gold answer as the authors compare it: GSM8K's text after `####`, LogiQA's index."""
    fam = family(task)
    if task == "gsm8k" and "####" in gold_text:
        return gold_text.split("####")[1].strip()
    if fam == "logiqa":
        return str(LETTERS.index(gold))
    return gold


def authors_correct(task: TaskName, final: str | None, gold: str, gold_text: str = "") -> bool:
    """Whether the authors' extracted `final` equals their gold string (`gold` is ours, normalised)."""
    return final is not None and final == authors_gold(task, gold, gold_text)


def as_committee_answer(task: TaskName, final: str | None) -> str | None:
    """The authors' answer in our canonical form, for records that keep canonical answers."""
    if final is None:
        return None
    if family(task) == "logiqa":
        return LETTERS[int(final)]
    return final
