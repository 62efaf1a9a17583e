"""How the student sees its inputs, at exam, in training and at eval alike.

Two layouts, chosen by `[student] prompt_format`: the model's own chat template,
or the paper's "### Instruction / ### Input / ### Response" layout from
`student_layout.txt`. Keeping one builder for exam, trainer and eval matters: a
student trained on one layout and evaluated on another would be mismeasured.
"""

from __future__ import annotations

from typing import Literal, Protocol

from core.config import TaskName
from prompts import BUILTIN, Templates

PromptFormat = Literal["chat", "instruction"]

_FAMILY: dict[str, str] = {"gsm8k": "math", "svamp": "math", "strategyqa": "strategyqa", "logiqa": "logiqa"}


class ChatTokenizer(Protocol):
    chat_template: str | None
    eos_token: str | None

    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: object) -> str: ...


def resolve_format(setting: Literal["auto", "chat", "instruction"], tokenizer: ChatTokenizer) -> PromptFormat:
    """`auto` becomes `chat` when the tokenizer ships a chat template, else `instruction`."""
    if setting == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "instruction"
    if setting == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ValueError("prompt_format = 'chat' but the student's tokenizer has no chat template; use 'instruction'")
    return setting


def _wrap(tokenizer: ChatTokenizer, fmt: PromptFormat, instruction: str, input_text: str, templates: Templates) -> str:
    if fmt == "chat":
        content = f"{instruction}\n\n{input_text}"
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
    return templates.render("student_layout", instruction=instruction, input=input_text) + "\n"


def instruction_name(task: TaskName) -> str:
    """The template holding the student's instruction for a task's questions."""
    return f"student_instruction_{_FAMILY[task]}"


def question_prompt(
    tokenizer: ChatTokenizer,
    fmt: PromptFormat,
    task: TaskName,
    question_text: str,
    templates: Templates = BUILTIN,
) -> str:
    """The prompt for answering a question: exam, eval, and the learn-from-rationale part."""
    return _wrap(tokenizer, fmt, templates.text(instruction_name(task)), question_text, templates)


def mistake_prompt(
    tokenizer: ChatTokenizer,
    fmt: PromptFormat,
    question_text: str,
    student_answer: str,
    templates: Templates = BUILTIN,
) -> str:
    """The prompt of the learn-from-mistakes part: question + the student's wrong answer."""
    input_text = templates.render(
        "learn_from_mistakes_input", question=question_text, student_answer=student_answer.strip()
    )
    return _wrap(tokenizer, fmt, templates.text("learn_from_mistakes_instruction"), input_text, templates)


def response_suffix(tokenizer: ChatTokenizer) -> str:
    """What ends a trained response (the tokenizer's eos), so the student learns to stop.

    For ChatML-style chat templates (SmolLM2, Qwen2.5) eos is the end-of-turn token.
    """
    return tokenizer.eos_token or ""
