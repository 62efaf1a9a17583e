"""What a teacher call costs: a built-in price table, overridable per teacher in the config.

Prices are USD per million tokens, input and output, as the providers bill the
usage they report. A model we do not know has no price (None), which every report
shows as "unknown", never as 0: a free-looking run that was not free is worse than
an honest blank.

>>> cost_usd(Prices(in_per_mtok=0.5, out_per_mtok=1.5, source="table"), 1000, 200)
0.0008
"""

from __future__ import annotations

import re

import msgspec

from core.config import TeacherSection


class Prices(msgspec.Struct, frozen=True, kw_only=True):
    """USD per million input and output tokens, and where the figures came from."""

    in_per_mtok: float
    out_per_mtok: float
    source: str


# USD per million tokens (input, output), list prices checked 2025-06 on the
# providers' pages: openai.com/api/pricing, ai.google.dev/gemini-api/docs/pricing
# (prompts up to 128k tokens; gemini-1.0-pro as last listed before retirement),
# anthropic.com/pricing, and for open-weight models the hosted price on
# together.ai/pricing (serverless). Prices change: a config's
# `price_in_per_mtok` / `price_out_per_mtok` always wins over this table.
_TABLE: dict[str, tuple[float, float]] = {
    # OpenAI
    "gpt-3.5-turbo": (0.5, 1.5),
    "gpt-4": (30.0, 60.0),
    "gpt-4-turbo": (10.0, 30.0),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1-nano": (0.1, 0.4),
    "o3-mini": (1.1, 4.4),
    "o4-mini": (1.1, 4.4),
    # Google
    "gemini-1.0-pro": (0.5, 1.5),
    "gemini-pro": (0.5, 1.5),
    "gemini-1.5-flash": (0.075, 0.3),
    "gemini-1.5-flash-8b": (0.0375, 0.15),
    "gemini-1.5-pro": (1.25, 5.0),
    "gemini-2.0-flash": (0.1, 0.4),
    "gemini-2.0-flash-lite": (0.075, 0.3),
    "gemini-2.5-flash": (0.3, 2.5),
    "gemini-2.5-pro": (1.25, 10.0),
    # Anthropic
    "claude-3-haiku": (0.25, 1.25),
    "claude-3-5-haiku": (0.8, 4.0),
    "claude-3-5-sonnet": (3.0, 15.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-opus": (15.0, 75.0),
    # Open weights, hosted (Together serverless)
    "mistralai/mixtral-8x7b-instruct-v0.1": (0.6, 0.6),
    "meta-llama/llama-3.3-70b-instruct": (0.88, 0.88),
    "meta-llama/llama-3.3-70b-instruct-turbo": (0.88, 0.88),
    "meta-llama/meta-llama-3.1-8b-instruct-turbo": (0.18, 0.18),
    "qwen/qwen2.5-72b-instruct": (1.2, 1.2),
    "qwen/qwen2.5-72b-instruct-turbo": (1.2, 1.2),
}

# Version suffixes providers append to a model family's name: dates
# (gpt-4o-2024-08-06, claude-3-5-sonnet-20241022, ...-preview-05-20), short
# revisions (gpt-3.5-turbo-0125, gemini-1.5-flash-002) and aliases (-latest).
_VERSION_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{2}-\d{2}|\d{3,4}|latest|preview|exp)$")


def table_prices(model: str) -> Prices | None:
    """The built-in price of `model`: exact name first, then with version suffixes stripped.

    Case-insensitive; a Gemini `models/` prefix is ignored. None when unknown.

    >>> table_prices("gpt-4o-2024-08-06").in_per_mtok
    2.5
    """
    name = model.strip().lower().removeprefix("models/")
    while True:
        if name in _TABLE:
            in_price, out_price = _TABLE[name]
            return Prices(in_per_mtok=in_price, out_per_mtok=out_price, source=f"table:{name}")
        stripped = _VERSION_SUFFIX.sub("", name)
        if stripped == name:
            return None
        name = stripped


def teacher_prices(teacher: TeacherSection) -> Prices | None:
    """A teacher's prices: the config's figures where given, the table's for the rest.

    None when either the input or the output price is known from neither.
    """
    table = table_prices(teacher.model)
    in_price = teacher.price_in_per_mtok
    out_price = teacher.price_out_per_mtok
    source = "config"
    if table is not None and (in_price is None or out_price is None):
        source = table.source if in_price is None and out_price is None else f"config+{table.source}"
        in_price = table.in_per_mtok if in_price is None else in_price
        out_price = table.out_per_mtok if out_price is None else out_price
    if in_price is None or out_price is None:
        return None
    return Prices(in_per_mtok=float(in_price), out_per_mtok=float(out_price), source=source)


def cost_usd(prices: Prices | None, input_tokens: int, output_tokens: int) -> float | None:
    """USD for one call's reported usage; None when the price is unknown."""
    if prices is None:
        return None
    return (input_tokens * prices.in_per_mtok + output_tokens * prices.out_per_mtok) / 1e6
