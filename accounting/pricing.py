"""What a teacher call costs: a built-in price table, overridable per teacher in the config.

Prices are USD per million tokens, input and output, as the providers bill the
usage they report. A model we do not know has no price (None), which every report
shows as "unknown", never as 0: a free-looking run that was not free is worse than
an honest blank.

>>> cost_usd(Prices(in_per_mtok=0.5, out_per_mtok=1.5, source="table"), 1000, 200)
0.0008
"""

from __future__ import annotations

import functools
import logging
import re
from datetime import date, timedelta

import msgspec

from core.calls import NO_DETAIL, UsageDetail
from core.config import TeacherSection
from engine.budget import CostFn
from store.calls import CallMode

log = logging.getLogger(__name__)


class Prices(msgspec.Struct, frozen=True, kw_only=True):
    """USD per million tokens, and where the figures came from.

    Cached prompt tokens (cache reads) and Anthropic's cache writes have their own rates;
    where none is known they are billed at the input rate (never less than they may cost).
    Reasoning tokens are output tokens and cost the output rate. The batch rates are the
    Batch APIs' (`mode = "batch"`); `mode_prices` turns them into the prices a batch call pays.
    """

    in_per_mtok: float
    out_per_mtok: float
    cached_in_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None
    batch_in_per_mtok: float | None = None
    batch_out_per_mtok: float | None = None
    source: str


class _Row(msgspec.Struct, frozen=True, array_like=True):
    """One table row: input, output, cached input, cache write, batch input, batch output (USD per Mtok)."""

    in_per_mtok: float
    out_per_mtok: float
    cached_in_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None
    batch_in_per_mtok: float | None = None
    batch_out_per_mtok: float | None = None


# The day the table's current models were last checked, and where (stored copies of the pages, read
# with the project's search tool; the providers' own pages first):
# - Anthropic: https://platform.claude.com/docs/en/about-claude/pricing (base input, 5-minute cache
#   writes, cache hits, output; batch is half: https://docs.anthropic.com/en/docs/build-with-claude/batch-processing);
# - OpenAI: https://developers.openai.com/api/docs/pricing and its model pages
#   (https://developers.openai.com/api/docs/models/gpt-5-nano: input, cached input, output, batch half),
#   cross-checked with https://chatgptpricing-akr.pages.dev/api-pricing (which quotes that page);
# - Gemini: https://ai.google.dev/gemini-api/docs/pricing (Standard tier, prompts up to 200k tokens;
#   cached input 10% of input, batch half), as quoted by https://deploybase.ai/articles/gemini-2.5-pricing
#   and https://hivebook.wiki/wiki/gemini-2-5-google-s-multimodal-flagship-family.
# Older rows were checked 2025-06 on openai.com/api/pricing, anthropic.com/pricing and, for open-weight
# models, together.ai/pricing (serverless); gemini-1.0-pro as last listed before retirement.
# Prices change: a config's `price_*_per_mtok` always wins.
PRICES_CHECKED = date(2026, 11, 30)
# A table older than this is said to be so, once per run.
STALE_AFTER = timedelta(days=183)

_TABLE: dict[str, _Row] = {
    # OpenAI: reasoning models (o-series, GPT-5 family) bill reasoning tokens as output.
    "gpt-5": _Row(1.25, 10.0, 0.125, None, 0.625, 5.0),
    "gpt-5-mini": _Row(0.25, 2.0, 0.025, None, 0.125, 1.0),
    "gpt-5-nano": _Row(0.05, 0.4, 0.005, None, 0.025, 0.2),
    "o3": _Row(2.0, 8.0, 0.5, None, 1.0, 4.0),
    "o4-mini": _Row(1.1, 4.4, 0.275, None, 0.55, 2.2),
    "o3-mini": _Row(1.1, 4.4, 0.55, None, 0.55, 2.2),
    "gpt-4.1": _Row(2.0, 8.0, 0.5, None, 1.0, 4.0),
    "gpt-4.1-mini": _Row(0.4, 1.6, 0.1, None, 0.2, 0.8),
    "gpt-4.1-nano": _Row(0.1, 0.4, 0.025, None, 0.05, 0.2),
    "gpt-4o": _Row(2.5, 10.0, 1.25, None, 1.25, 5.0),
    "gpt-4o-mini": _Row(0.15, 0.6, 0.075, None, 0.075, 0.3),
    "gpt-3.5-turbo": _Row(0.5, 1.5),
    "gpt-4": _Row(30.0, 60.0),
    "gpt-4-turbo": _Row(10.0, 30.0),
    # Google: thinking tokens are output tokens; cached content is inside the prompt count.
    "gemini-2.5-pro": _Row(1.25, 10.0, 0.125, None, 0.625, 5.0),
    "gemini-2.5-flash": _Row(0.3, 2.5, 0.03, None, 0.15, 1.25),
    "gemini-2.5-flash-lite": _Row(0.1, 0.4, 0.01, None, 0.05, 0.2),
    "gemini-2.0-flash": _Row(0.1, 0.4, 0.025, None, 0.05, 0.2),
    "gemini-2.0-flash-lite": _Row(0.075, 0.3),
    "gemini-1.0-pro": _Row(0.5, 1.5),
    "gemini-pro": _Row(0.5, 1.5),
    "gemini-1.5-flash": _Row(0.075, 0.3),
    "gemini-1.5-flash-8b": _Row(0.0375, 0.15),
    "gemini-1.5-pro": _Row(1.25, 5.0),
    # Anthropic: cache reads 0.1x input, 5-minute cache writes 1.25x input.
    # The models' pages: https://platform.claude.com/docs/en/models/opus-5/overview (and opus-5-5, opus-4-8);
    # Fable 5.1 at twice Opus 4.8 throughout (https://kellerai.blog/when-the-rate-card-has-tiers-in-depth,
    # cache reads $1: https://www.digitalapplied.com/blog/fable-5-usage-credits-cost-engineering-cache-batch-2026).
    "claude-fable-5-1": _Row(10.0, 50.0, 1.0, 12.5, 5.0, 25.0),
    "claude-fable-5": _Row(10.0, 50.0, 1.0, 12.5, 5.0, 25.0),
    "claude-opus-5-5": _Row(4.0, 20.0, 0.2, 5.0, 2.0, 10.0),
    "claude-opus-5": _Row(5.0, 25.0, 0.5, 6.25, 2.5, 12.5),
    "claude-opus-4-8": _Row(5.0, 25.0, 0.5, 6.25, 2.5, 12.5),
    "claude-opus-4-6": _Row(5.0, 25.0, 0.5, 6.25, 2.5, 12.5),
    "claude-opus-4-5": _Row(5.0, 25.0, 0.5, 6.25, 2.5, 12.5),
    "claude-opus-4-1": _Row(15.0, 75.0, 1.5, 18.75, 7.5, 37.5),
    "claude-opus-4": _Row(15.0, 75.0, 1.5, 18.75, 7.5, 37.5),
    "claude-sonnet-4-6": _Row(3.0, 15.0, 0.3, 3.75, 1.5, 7.5),
    "claude-sonnet-4-5": _Row(3.0, 15.0, 0.3, 3.75, 1.5, 7.5),
    "claude-sonnet-4": _Row(3.0, 15.0, 0.3, 3.75, 1.5, 7.5),
    "claude-3-7-sonnet": _Row(3.0, 15.0, 0.3, 3.75, 1.5, 7.5),
    "claude-haiku-4-5": _Row(1.0, 5.0, 0.1, 1.25, 0.5, 2.5),
    "claude-3-5-haiku": _Row(0.8, 4.0, 0.08, 1.0, 0.4, 2.0),
    "claude-3-haiku": _Row(0.25, 1.25, 0.03, 0.3, 0.125, 0.625),
    "claude-3-5-sonnet": _Row(3.0, 15.0),
    "claude-3-opus": _Row(15.0, 75.0),
    # Open weights, hosted (Together serverless)
    "mistralai/mixtral-8x7b-instruct-v0.1": _Row(0.6, 0.6),
    "meta-llama/llama-3.3-70b-instruct": _Row(0.88, 0.88),
    "meta-llama/llama-3.3-70b-instruct-turbo": _Row(0.88, 0.88),
    "meta-llama/meta-llama-3.1-8b-instruct-turbo": _Row(0.18, 0.18),
    "qwen/qwen2.5-72b-instruct": _Row(1.2, 1.2),
    "qwen/qwen2.5-72b-instruct-turbo": _Row(1.2, 1.2),
}


@functools.cache
def warn_if_stale(today: date) -> None:
    """Log `stale_table_warning` once per process (a run checks its teachers more than once)."""
    warning = stale_table_warning(today)
    if warning is not None:
        log.warning("%s", warning)


def stale_table_warning(today: date) -> str | None:
    """A one-line warning when the price table was checked more than six months before `today`, else None."""
    if today - PRICES_CHECKED <= STALE_AFTER:
        return None
    return (
        f"the built-in price table was last checked on {PRICES_CHECKED.isoformat()}, over six months ago: "
        "its USD figures may be out of date; set price_in_per_mtok / price_out_per_mtok (and the cached "
        "prices) on your [[teachers]] to be sure"
    )


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
            return Prices(**msgspec.structs.asdict(_TABLE[name]), source=f"table:{name}")
        stripped = _VERSION_SUFFIX.sub("", name)
        if stripped == name:
            return None
        name = stripped


def teacher_prices(teacher: TeacherSection) -> Prices | None:
    """A teacher's prices: the config's figures where given, the table's for the rest.

    None when either the input or the output price is known from neither. The table's
    cached and batch rates go with its input and output rates; a config that sets its
    own input price and no cached price pays the input rate for cached tokens.
    """
    table = table_prices(teacher.model)
    in_price = teacher.price_in_per_mtok
    out_price = teacher.price_out_per_mtok
    source = "config"
    table_part = None
    if table is not None and (in_price is None or out_price is None):
        source = table.source if in_price is None and out_price is None else f"config+{table.source}"
        table_part = table if in_price is None else None
        in_price = table.in_per_mtok if in_price is None else in_price
        out_price = table.out_per_mtok if out_price is None else out_price
    if in_price is None or out_price is None:
        return None
    cached, write = teacher.price_cached_in_per_mtok, teacher.price_cache_write_per_mtok
    return Prices(
        in_per_mtok=float(in_price),
        out_per_mtok=float(out_price),
        cached_in_per_mtok=cached if cached is not None else table_part and table_part.cached_in_per_mtok,
        cache_write_per_mtok=write if write is not None else table_part and table_part.cache_write_per_mtok,
        batch_in_per_mtok=table.batch_in_per_mtok if table is not None and source.startswith("table") else None,
        batch_out_per_mtok=table.batch_out_per_mtok if table is not None and source.startswith("table") else None,
        source=source,
    )


def cost_usd(
    prices: Prices | None, input_tokens: int, output_tokens: int, detail: UsageDetail = NO_DETAIL
) -> float | None:
    """USD for one call's reported usage; None when the price is unknown.

    `detail`'s cached and cache-write tokens lie inside `input_tokens` and are billed at
    their own rates; its reasoning tokens lie inside `output_tokens` (same rate).
    """
    if prices is None:
        return None
    cached, written = detail.cache_read_tokens, detail.cache_write_tokens
    cached_rate = prices.cached_in_per_mtok if prices.cached_in_per_mtok is not None else prices.in_per_mtok
    write_rate = prices.cache_write_per_mtok if prices.cache_write_per_mtok is not None else prices.in_per_mtok
    fresh = max(0, input_tokens - cached - written)
    return (
        fresh * prices.in_per_mtok + cached * cached_rate + written * write_rate + output_tokens * prices.out_per_mtok
    ) / 1e6


# Providers whose Batch API bills every model's usage (input, output, cache reads and writes) at half
# the synchronous price, as each documents:
# - OpenAI: "a 50% cost discount compared to synchronous APIs", https://platform.openai.com/docs/guides/batch
#   (the model pages list batch rates at half: https://developers.openai.com/api/docs/models/gpt-5-nano);
# - Anthropic: "reducing costs by 50%", https://platform.claude.com/docs/en/build-with-claude/batch-processing
#   (its pricing page applies the batch discount on top of the cache multipliers);
# - Gemini: "Batch: 50% discount", https://ai.google.dev/gemini-api/docs/optimization and
#   https://developers.googleblog.com/scale-your-ai-workloads-batch-mode-gemini-api ("priced at 50% less
#   than the standard rate for a given model").
BATCH_HALF_PROVIDERS: frozenset[str] = frozenset(("openai", "anthropic", "gemini"))


def batch_prices(prices: Prices | None, provider: str) -> Prices | None:
    """What the same usage costs through `provider`'s Batch API.

    The table's batch input and output rates where it has them; otherwise half the sync
    rates, for the providers that bill every model at half in batch (the source says so).
    Cached and cache-write rates are halved too. None when the price is unknown, or the
    provider documents no batch price.

    >>> batch_prices(Prices(in_per_mtok=0.5, out_per_mtok=1.5, source="config"), "openai").source
    'config, batch at half (openai bills batches at 50 %)'
    """
    if prices is None:
        return None
    batch_in, batch_out = prices.batch_in_per_mtok, prices.batch_out_per_mtok
    if batch_in is not None and batch_out is not None:
        source = f"{prices.source}, batch rates"
    elif provider in BATCH_HALF_PROVIDERS:
        batch_in, batch_out = prices.in_per_mtok / 2, prices.out_per_mtok / 2
        source = f"{prices.source}, batch at half ({provider} bills batches at 50 %)"
    else:
        return None
    cached, write = prices.cached_in_per_mtok, prices.cache_write_per_mtok
    return msgspec.structs.replace(
        prices,
        in_per_mtok=batch_in,
        out_per_mtok=batch_out,
        cached_in_per_mtok=None if cached is None else cached / 2,
        cache_write_per_mtok=None if write is None else write / 2,
        source=source,
    )


def mode_prices(teacher: TeacherSection, mode: CallMode) -> Prices | None:
    """A teacher's prices for calls sent in `mode` ("sync": `teacher_prices`; "batch": `batch_prices` of them)."""
    prices = teacher_prices(teacher)
    return prices if mode == "sync" else batch_prices(prices, teacher.provider)


def cost_fn(teacher: TeacherSection, mode: CallMode) -> CostFn:
    """The engine's cost function for a teacher's calls in `mode` (USD of one call's usage; None: unknown).

    A batch teacher needs both: "batch" for its batch lane, "sync" for requests that fall back.
    """
    prices = mode_prices(teacher, mode)
    return lambda input_tokens, output_tokens, detail: cost_usd(prices, input_tokens, output_tokens, detail)
