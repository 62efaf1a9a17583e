"""Where the emulator's answers come from: echo, a JSONL of canned answers, or a Python callable.

`EmulatorSpec.answers` picks one: "echo", a path to a `.jsonl` file whose lines are
`{"model": optional, "match": optional substring of the last user message, "text": ...}`
(first match wins, no match echoes), or "package.module:function" naming an `AnswerFn`.
"""

from __future__ import annotations

import importlib
from functools import partial
from pathlib import Path
from typing import cast

import msgspec

from core.errors import ConfigError, DataError
from core.jsonl import decode_lines
from emulator.spec import AnswerFn, AnswerRequest, EmulatorSpec
from emulator.tokens import count_tokens, fit_tokens

# Words of the short echo given when `output_tokens` is not set.
SHORT_ECHO_WORDS = 12


class CannedAnswer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: str
    model: str | None = None
    match: str | None = None


def echo(ask: AnswerRequest, output_tokens: int | None = None) -> str:
    """An answer made of the last user message: its first words, or repeated to `output_tokens` tokens exactly."""
    last_user = ask.last_user_text()
    if output_tokens is None:
        return "Echo: " + " ".join(last_user.split()[:SHORT_ECHO_WORDS])
    base = last_user.strip() if count_tokens(last_user) else "echo"
    repeats = output_tokens // count_tokens(base) + 1
    return fit_tokens(" ".join([base] * repeats), output_tokens)[0]


def load_canned(path: Path) -> list[CannedAnswer]:
    """The canned answers of a JSONL file; DataError naming the line when one is malformed."""
    decoder = msgspec.json.Decoder(CannedAnswer)
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read canned answers: {exc.strerror}") from None
    return list(decode_lines(path, lines, decoder, "canned answer"))


def canned(answers: list[CannedAnswer], output_tokens: int | None, ask: AnswerRequest) -> str:
    """The first canned answer matching the model and the last user message, else an echo."""
    last_user = ask.last_user_text()
    for answer in answers:
        if (answer.model is None or answer.model == ask.model) and (answer.match is None or answer.match in last_user):
            return answer.text
    return echo(ask, output_tokens)


def import_answer_fn(target: str) -> AnswerFn:
    """The callable named by "package.module:function"; ConfigError when it cannot be found."""
    module_name, _, attr = target.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"emulator answers {target!r}: cannot import it ({exc})") from None
    if not callable(fn):
        raise ConfigError(f"emulator answers {target!r}: not a callable")
    # Its signature cannot be checked before the first request calls it.
    return cast(AnswerFn, fn)


def answer_fn_for(spec: EmulatorSpec) -> AnswerFn:
    """The answer function `spec.answers` names."""
    source = spec.answers
    if source == "echo":
        return partial(echo, output_tokens=spec.output_tokens)
    if source.endswith(".jsonl") or Path(source).is_file():
        return partial(canned, load_canned(Path(source)), spec.output_tokens)
    if ":" in source:
        return import_answer_fn(source)
    raise ConfigError(f"emulator answers {source!r}: use 'echo', a path to a .jsonl file, or 'package.module:function'")
