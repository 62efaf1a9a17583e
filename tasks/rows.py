"""One benchmark record -> one `Question`, for every task and every place records come from.

The field names are Hugging Face's (`openai/gsm8k` main, `ChilleD/SVAMP`,
`ChilleD/StrategyQA`, `lucasmccabe/logiqa`); the raw GitHub files in
../shared/data use the same names or are read into them (LogiQA's text blocks,
StrategyQA's KARD split), so a single converter per task serves both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from core.config import TaskName
from core.records import Question
from tasks.answers import LETTERS, normalize_answer

Row = Mapping[str, object]


class BadRecord(ValueError):
    """A record that cannot become a Question; the message says which field and why."""


def to_question(task: TaskName, index: int, row: Row) -> Question:
    """The Question for `row`, the `index`-th item of its split (which becomes its id).

    Raises BadRecord naming the missing or unreadable field.
    """
    if not isinstance(row, Mapping):
        raise BadRecord(f"expected a JSON object, got {type(row).__name__}")
    return _CONVERTERS[task](str(index), row)


def _text(row: Row, key: str) -> str:
    if key not in row:
        raise BadRecord(f"missing field {key!r}")
    value = row[key]
    if not isinstance(value, str):
        raise BadRecord(f"field {key!r} should be text, got {type(value).__name__}")
    return value.strip()


def _gold(task: TaskName, value: object, key: str) -> str:
    gold = normalize_answer(task, str(value)) if isinstance(value, (str, int, float)) else None
    if gold is None:
        raise BadRecord(f"field {key!r}: cannot read a {task} answer from {value!r}")
    return gold


def _gsm8k(qid: str, row: Row) -> Question:
    answer = _text(row, "answer")
    if "####" not in answer:
        raise BadRecord("field 'answer' has no '#### <number>' final answer")
    # The final answer follows the last "####" (LfC: answer.split('####')[1]).
    gold = _gold("gsm8k", answer.rsplit("####", 1)[1], "answer")
    return Question(id=qid, task="gsm8k", question=_text(row, "question"), gold=gold, gold_text=answer)


def _svamp(qid: str, row: Row) -> Question:
    # ChilleD/SVAMP adds question_concat = Body.strip() + " " + Question.strip(); SVAMP.json has only the parts.
    if "question_concat" in row:
        question = _text(row, "question_concat")
    else:
        question = f"{_text(row, 'Body')} {_text(row, 'Question')}"
    if "Answer" not in row:
        raise BadRecord("missing field 'Answer'")
    gold = _gold("svamp", row["Answer"], "Answer")
    equation = row.get("Equation")
    return Question(
        id=qid, task="svamp", question=question, gold=gold, gold_text=equation if isinstance(equation, str) else ""
    )


def _strategyqa(qid: str, row: Row) -> Question:
    if "answer" not in row:
        raise BadRecord("missing field 'answer'")
    gold = _gold("strategyqa", str(row["answer"]), "answer")
    facts = row.get("facts", "")
    # The official file lists facts; ChilleD/StrategyQA joins them into one string.
    if isinstance(facts, list):
        facts = " ".join(str(fact) for fact in facts)
    if not isinstance(facts, str):
        raise BadRecord(f"field 'facts' should be text or a list of text, got {type(facts).__name__}")
    return Question(id=qid, task="strategyqa", question=_text(row, "question"), gold=gold, gold_text=facts.strip())


def _logiqa(qid: str, row: Row) -> Question:
    options = row.get("options")
    if not isinstance(options, (list, tuple)) or len(options) != 4 or not all(isinstance(o, str) for o in options):
        raise BadRecord(f"field 'options' should be a list of 4 texts, got {options!r}")
    if "correct_option" not in row:
        raise BadRecord("missing field 'correct_option'")
    gold = _gold("logiqa", str(row["correct_option"]), "correct_option")
    return Question(
        id=qid,
        task="logiqa",
        question=_text(row, "query"),
        gold=gold,
        gold_text=options[LETTERS.index(gold)].strip(),
        context=_text(row, "context"),
        options=tuple(o.strip() for o in options),
    )


_CONVERTERS: dict[str, Callable[[str, Row], Question]] = {
    "gsm8k": _gsm8k,
    "svamp": _svamp,
    "strategyqa": _strategyqa,
    "logiqa": _logiqa,
}
