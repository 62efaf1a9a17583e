"""How the student sees its inputs, at exam, in training and at eval alike.

Two layouts, chosen by `[student] prompt_format`: the model's own chat template,
or the paper's "### Instruction / ### Input / ### Response" layout from
`student_layout.txt`. Keeping one builder for exam, trainer and eval matters: a
student trained on one layout and evaluated on another would be mismeasured.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from core.config import TaskName
from prompts import BUILTIN, Templates
from tasks.family import family

PromptFormat = Literal["chat", "instruction"]


class ChatTokenizer(Protocol):
    # Read-only and loosely typed: transformers' chat_template may be a dict of named templates. Its
    # eos_token is served by __getattr__, which protocols do not see: `response_suffix` reads it with getattr.
    @property
    def chat_template(self) -> object: ...

    # transformers returns text or token ids depending on `tokenize`; `chat_prompt` asks for text.
    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: Any) -> object: ...


def chat_prompt(tokenizer: ChatTokenizer, content: str) -> str:
    """One user turn through the tokenizer's chat template, ready for the assistant's answer, as text."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    if not isinstance(text, str):
        raise TypeError(f"apply_chat_template(tokenize=False) returned {type(text).__name__}, not text")
    return text


def resolve_format(setting: Literal["auto", "chat", "instruction"], tokenizer: ChatTokenizer) -> PromptFormat:
    """`auto` becomes `chat` when the tokenizer ships a chat template, else `instruction`."""
    if setting == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "instruction"
    if setting == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ValueError("prompt_format = 'chat' but the student's tokenizer has no chat template; use 'instruction'")
    return setting


def _wrap(tokenizer: ChatTokenizer, fmt: PromptFormat, instruction: str, input_text: str, templates: Templates) -> str:
    if fmt == "chat":
        return chat_prompt(tokenizer, f"{instruction}\n\n{input_text}")
    return templates.render("student_layout", instruction=instruction, input=input_text) + "\n"


def instruction_name(task: TaskName) -> str:
    """The template holding the student's instruction for a task's questions."""
    return f"student_instruction_{family(task)}"


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
    eos = getattr(tokenizer, "eos_token", None)
    return eos if isinstance(eos, str) else ""
