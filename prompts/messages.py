"""What teachers are asked: the question as text, and the chat messages for each FAIR stage."""

from __future__ import annotations

from string import ascii_uppercase

import prompts
from core.calls import Message
from core.config import Stage, TaskName
from core.records import Mistake, Question
from core.samples import DecidedSample
from tasks.definitions import answer_type_of
from tasks.family import family


def format_question(q: Question | Mistake | DecidedSample) -> str:
    """The question as the student and the teachers see it.

    With a context or options (LogiQA, a defined choice task): the context, the question
    and the options lettered "A.", "B.", ..., one per line. Otherwise the question itself
    (SVAMP's already joins Body and Question).
    """
    if not q.context and not q.options:
        return q.question
    lettered = [f"{letter}. {option}" for letter, option in zip(ascii_uppercase, q.options, strict=False)]
    return "\n".join([q.context, q.question, *lettered]).strip()


def gold_hint(mistake: Mistake) -> str:
    """The gold answer as the feedback and review prompts' hint: "72", "true", "(B) <option text>"."""
    return answer_type_of(mistake.task).hint(mistake.gold, mistake.options)


def template_name(stage: Stage, task: TaskName) -> str:
    """The prompt template for `stage` and `task`'s family, e.g. "teacher_rationale_math".

    The one place that maps a stage to its template.
    """
    prefix = {"rationale": "teacher_rationale", "feedback": "teacher_feedback", "review": "review"}[stage]
    return f"{prefix}_{family(task)}"


def teacher_messages(
    stage: Stage, mistake: Mistake, *, rationale: str | None = None, templates: prompts.Templates = prompts.BUILTIN
) -> tuple[Message, ...]:
    """The chat messages that ask a teacher for `stage` on `mistake`.

    "rationale": solve the question step by step; "feedback": explain the student's
    mistake (with the gold answer as a hint); "review": score `rationale`, which is
    required for this stage only, from 1 to 5. `templates`: the committee layout's
    wording (a user's `[run] prompts` folder, or the built-in one).

    >>> teacher_messages("review", m, rationale="... The answer is 4.")[0].role  # doctest: +SKIP
    'user'
    """
    if (stage == "review") != (rationale is not None):
        raise ValueError(f"stage {stage!r}: `rationale` is {'required' if stage == 'review' else 'only for review'}")
    fields = {"question": format_question(mistake)}
    if stage == "feedback":
        fields |= {"student_answer": mistake.student_answer, "gold": gold_hint(mistake)}
    elif stage == "review":
        fields |= {"rationale": rationale or "", "gold": gold_hint(mistake)}
    return (Message(role="user", content=templates.render(template_name(stage, mistake.task), **fields)),)
