"""Prompt sets: the wording of the exam, the teacher calls, the training records and eval.

`[run] prompts` picks one set for the whole run:

- `"committee"` (default): this project's templates, `prompts/*.txt`.
- `"paper"`: the FAIR authors' strings, `prompts/paper/` (MIT, their notice beside them),
  composed exactly as their code composes them (`prompts/paper/README.md`).
- a folder: a user's own wording in the committee set's layout (the same file names
  and fields as `prompts/*.txt`). Its files override the built-in templates of the same
  name; the rest come from the built-in set. Checked before any call (`check_config`),
  one line each: a file whose name matches no template, a template with a placeholder
  its kind does not fill, a template a task needs that neither provides.

Every consumer (scheduler, exam, trainer, eval, forecast) asks the set, so a run never
mixes two wordings. The set is part of each teacher call's messages, hence of its
store key: switching sets re-asks the teachers instead of reusing the other set's answers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Union

from core.calls import Message
from core.config import Config, Stage, TaskName
from core.errors import ConfigError
from core.records import Mistake, Question, TrainRecord
from prompts import BUILTIN, Templates
from prompts.messages import format_question, teacher_messages, template_name
from prompts.student import (
    ChatTokenizer,
    PromptFormat,
    chat_prompt,
    instruction_name,
    mistake_prompt,
    question_prompt,
)
from tasks.authors_formats import authors_hint, authors_train_hint
from tasks.family import family

if TYPE_CHECKING:
    from core.samples import DecidedSample

SYSTEM_TEMPLATE = "teacher_system"
# What a prompt's question can come from: a benchmark item, a mistake, or a decided sample.
Asked = Union[Question, Mistake, "DecidedSample"]


class PromptSet(Protocol):
    """What every prompt set renders. `fmt` is the student's resolved prompt format."""

    name: str
    templates: Templates

    def required(self, tasks: Iterable[TaskName]) -> list[str]:
        """The template names the given tasks need."""
        ...

    def teacher_messages(
        self, stage: Stage, mistake: Mistake, *, rationale: str | None = None, system: bool = False
    ) -> tuple[Message, ...]:
        """The messages asking a teacher for `stage`; `system`: prepend the set's system message."""
        ...

    def record_question(self, sample: Asked) -> str:
        """The question text a training record keeps (`TrainRecord.question`)."""
        ...

    def exam_prompt(self, tokenizer: ChatTokenizer, fmt: PromptFormat, q: Question) -> str:
        """What the student is asked at the exam."""
        ...

    def eval_prompt(self, tokenizer: ChatTokenizer, fmt: PromptFormat, q: Question) -> str:
        """What the student is asked at eval."""
        ...

    def rationale_prompt(self, tokenizer: ChatTokenizer, fmt: PromptFormat, r: TrainRecord) -> str:
        """The prompt of a training record's learn-from-rationale part."""
        ...

    def feedback_prompt(self, tokenizer: ChatTokenizer, fmt: PromptFormat, r: TrainRecord) -> str:
        """The prompt of a training record's learn-from-mistakes part."""
        ...


def _with_system(templates: Templates, system: bool, user: str) -> tuple[Message, ...]:
    head = (Message(role="system", content=templates.text(SYSTEM_TEMPLATE)),) if system else ()
    return (*head, Message(role="user", content=user))


class CommitteePrompts:
    """This project's wording: instruction + question for the student, one template per stage and family."""

    def __init__(self, name: str, templates: Templates):
        self.name = name
        self.templates = templates

    def required(self, tasks: Iterable[TaskName]) -> list[str]:
        names = {"student_layout", "learn_from_mistakes_input", "learn_from_mistakes_instruction", SYSTEM_TEMPLATE}
        for task in tasks:
            names.add(instruction_name(task))
            names.update(template_name(stage, task) for stage in ("rationale", "feedback", "review"))
        return sorted(names)

    def teacher_messages(
        self, stage: Stage, mistake: Mistake, *, rationale: str | None = None, system: bool = False
    ) -> tuple[Message, ...]:
        (user,) = teacher_messages(stage, mistake, rationale=rationale, templates=self.templates)
        return _with_system(self.templates, system, user.content)

    def record_question(self, sample: Asked) -> str:
        return format_question(sample)

    def exam_prompt(self, tokenizer: ChatTokenizer, fmt: PromptFormat, q: Question) -> str:
        return question_prompt(tokenizer, fmt, q.task, format_question(q), self.templates)

    eval_prompt = exam_prompt

    def rationale_prompt(self, tokenizer: ChatTokenizer, fmt: PromptFormat, r: TrainRecord) -> str:
        return question_prompt(tokenizer, fmt, r.task, r.question, self.templates)

    def feedback_prompt(self, tokenizer: ChatTokenizer, fmt: PromptFormat, r: TrainRecord) -> str:
        return mistake_prompt(tokenizer, fmt, r.question, r.student_answer, self.templates)


class PaperPrompts:
    """The FAIR authors' strings, composed as their code does (see PAPER_PROMPTS in the docs).

    Exam: their question prompt as raw text (GSM8K/SVAMP the bare question). Teachers:
    the same for rationales; feedback and review prompts with the question (LogiQA:
    its filled question prompt) and the gold answer as their files store it. Training
    records: `.strip()`ped train prompts; the feedback record's input is the feedback
    prompt without its first two lines, with the short gold hint. Eval: the train
    rationale prompt, not stripped (their test.py).
    """

    def __init__(self, name: str, templates: Templates):
        self.name = name
        self.templates = templates

    def required(self, tasks: Iterable[TaskName]) -> list[str]:
        names = {"teacher_feedback", "review", "train_feedback", SYSTEM_TEMPLATE}
        for task in tasks:
            names.update((f"question_{family(task)}", f"train_rationale_{family(task)}"))
        return sorted(names)

    def _question(self, item: Asked) -> str:
        """The authors' question prompt: exam and rationale calls."""
        name = f"question_{family(item.task)}"
        if "options" in self.templates.fields(name):
            # LogiQA's: their code formats the options list with str(), Python's repr of each option.
            return self.templates.render(
                name, context=item.context, query=item.question, options=str(list(item.options))
            )
        return self.templates.render(name, question=item.question)

    def _plain(self, item: Asked) -> str:
        """The question in feedback, review and training prompts: bare, or with options its filled prompt (LogiQA)."""
        return self._question(item) if item.options else item.question

    def teacher_messages(
        self, stage: Stage, mistake: Mistake, *, rationale: str | None = None, system: bool = False
    ) -> tuple[Message, ...]:
        if (stage == "review") != (rationale is not None):
            need = "required" if stage == "review" else "only for review"
            raise ValueError(f"stage {stage!r}: `rationale` is {need}")
        if stage == "rationale":
            user = self._question(mistake)
        elif stage == "feedback":
            user = self.templates.render(
                "teacher_feedback",
                question=self._plain(mistake),
                student_answer=mistake.student_answer,
                gold=authors_hint(mistake),
            )
        else:
            user = self.templates.render(
                "review", question=self._plain(mistake), rationale=rationale or "", gold=authors_hint(mistake)
            )
        return _with_system(self.templates, system, user)

    def record_question(self, sample: Asked) -> str:
        return self._plain(sample)

    def _student(self, tokenizer: ChatTokenizer, fmt: PromptFormat, text: str) -> str:
        if fmt == "chat":
            return chat_prompt(tokenizer, text.strip())
        # The authors tokenize the raw string (no chat template), as `instruction` does.
        return text

    def exam_prompt(self, tokenizer: ChatTokenizer, fmt: PromptFormat, q: Question) -> str:
        return self._student(tokenizer, fmt, self._question(q))

    def eval_prompt(self, tokenizer: ChatTokenizer, fmt: PromptFormat, q: Question) -> str:
        return self._student(
            tokenizer, fmt, self.templates.render(f"train_rationale_{family(q.task)}", question=self._plain(q))
        )

    def rationale_prompt(self, tokenizer: ChatTokenizer, fmt: PromptFormat, r: TrainRecord) -> str:
        text = self.templates.render(f"train_rationale_{family(r.task)}", question=r.question)
        return self._student(tokenizer, fmt, text.strip())

    def feedback_input(self, question: str, student_answer: str, hint: str) -> str:
        """The feedback prompt without its first two lines (the leading newline and the teacher sentence)."""
        filled = self.templates.render("teacher_feedback", question="\0q", student_answer="\0a", gold="\0g")
        # Cut the lines of the template, then fill: a question with newlines must not shift the cut.
        rest = "\n".join(filled.split("\n")[2:])
        return rest.replace("\0q", question).replace("\0a", student_answer).replace("\0g", hint)

    def feedback_prompt(self, tokenizer: ChatTokenizer, fmt: PromptFormat, r: TrainRecord) -> str:
        hint = authors_train_hint(r.task, r.gold)
        text = self.templates.render("train_feedback", input=self.feedback_input(r.question, r.student_answer, hint))
        return self._student(tokenizer, fmt, text.strip())


PAPER_FOLDER = resources.files("prompts").joinpath("paper")


@cache
def prompt_set(setting: str, base_dir: Path | None = None) -> PromptSet:
    """The prompt set named by `[run] prompts`: "committee", "paper", or a folder (relative to `base_dir`).

    Raises ConfigError (one line, naming the key) for a setting that is neither a set
    nor an existing folder.
    """
    if setting == "committee":
        return CommitteePrompts("committee", BUILTIN)
    if setting == "paper":
        return PaperPrompts("paper", Templates(PAPER_FOLDER, verbatim=True))
    folder = Path(setting) if base_dir is None else base_dir / setting
    if not folder.is_dir():
        raise ConfigError(
            f"[run].prompts = {setting!r}: not a prompt set (committee, paper) nor a folder of templates; "
            f"use one of those"
        )
    return CommitteePrompts(str(folder), Templates(folder, fallback=BUILTIN))


def student_templates(setting: str) -> Templates:
    """The committee-layout templates a run's student instructions come from (DPO's preference prompts):
    a folder's, over the built-in set; else the built-in set (the paper set has no instructions)."""
    templates = prompt_set(setting).templates
    return templates if templates.fallback is not None else BUILTIN


# The templates named per family, by prefix; their fields are those of the built-in math family's.
FAMILY_PREFIXES = ("teacher_rationale", "teacher_feedback", "review", "student_instruction")


def allowed_fields(name: str) -> set[str] | None:
    """The placeholders template `name` may use (those its built-in counterpart fills), or None for no template."""
    if BUILTIN.has(name):
        return BUILTIN.fields(name)
    prefix = next((p for p in FAMILY_PREFIXES if name.startswith(f"{p}_") and len(name) > len(p) + 1), None)
    return None if prefix is None else BUILTIN.fields(f"{prefix}_math")


def check_folder(prompts: PromptSet, tasks: Iterable[TaskName]) -> None:
    """Raise ConfigError on the first file of a user's template folder that no template is named like,
    or that uses a placeholder its kind does not fill. Built-in sets pass."""
    folder = prompts.templates.folder
    if prompts.templates.fallback is None or not isinstance(folder, Path):
        return
    needed = set(prompts.required(tasks))
    for path in sorted(folder.glob("*.txt")):
        allowed = allowed_fields(path.stem)
        if allowed is None and path.stem not in needed:
            raise ConfigError(
                f"[run].prompts: {path} matches no template (a typo?); name it like a file of prompts/ "
                f"(e.g. review_math.txt) or <kind>_<templates>.txt for a task's `templates`"
            )
        unknown = prompts.templates.fields(path.stem) - (allowed or set())
        if unknown:
            fill = ", ".join(f"{{{{{f}}}}}" for f in sorted(allowed or ())) or "none"
            raise ConfigError(
                f"[run].prompts: {path} has unknown placeholder {{{{{sorted(unknown)[0]}}}}}; "
                f"this template may use {fill}"
            )


def check_templates(prompts: PromptSet, tasks: Iterable[TaskName], *, system: bool) -> None:
    """Raise ConfigError naming the first template the run needs and the set lacks."""
    tasks = list(tasks)
    needed = [n for n in prompts.required(tasks) if n != SYSTEM_TEMPLATE or system]
    for name in needed:
        if not prompts.templates.has(name):
            users = ", ".join(t for t in tasks if name.endswith(f"_{family(t)}")) or "the run"
            raise ConfigError(
                f"[run].prompts = {prompts.name!r}: template {name}.txt (needed by {users}) is missing from "
                f"{prompts.templates.folder}; add it (see prompts/ for the committee set's files)"
            )


def check_config(cfg: Config, config_path: str | os.PathLike[str]) -> None:
    """Check that the run's prompt set has every template its datasets and teachers need, before any call.

    Raises ConfigError (one line, naming the config file and the template).
    """
    tasks = [d.task for d in cfg.datasets]
    try:
        prompts = prompt_set(cfg.run.prompts)
        check_folder(prompts, tasks)
        check_templates(prompts, tasks, system=any(t.system_message for t in cfg.teachers))
    except ConfigError as exc:
        raise ConfigError(f"{config_path}: {exc}") from None
