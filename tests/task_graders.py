"""A user's grader as `[[datasets]] answer.grader` names it, for tests/test_task_config.py."""

from __future__ import annotations

from collections.abc import Sequence


def mentions_gold(reply: str, gold: str, options: Sequence[str]) -> bool:
    """Right when the reply's last sentence mentions the gold answer, in any case."""
    return gold.lower() in reply.lower().rstrip(". ").rsplit(".", 1)[-1]


def two_arguments(reply: str, gold: str) -> bool:
    """A grader written without the options argument: refused when the config loads."""
    return gold in reply


def with_defaults(reply: str, gold: str, options: Sequence[str] = (), *, strict: bool = False) -> bool:
    """A grader that also takes (reply, gold, options): accepted."""
    return gold in reply
