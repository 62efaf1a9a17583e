"""The price table, config overrides, and unknown prices."""

from __future__ import annotations

import pytest

from accounting.pricing import Prices, cost_usd, table_prices, teacher_prices
from core.config import TeacherSection


def test_table_prices_match_exact_then_dated_prefix():
    assert table_prices("gpt-3.5-turbo") == Prices(in_per_mtok=0.5, out_per_mtok=1.5, source="table:gpt-3.5-turbo")
    assert table_prices("gpt-4o-2024-08-06").source == "table:gpt-4o"
    assert table_prices("gpt-4o-mini-2024-07-18").source == "table:gpt-4o-mini"
    assert table_prices("claude-3-5-sonnet-20241022").source == "table:claude-3-5-sonnet"
    assert table_prices("models/gemini-1.5-flash-002").source == "table:gemini-1.5-flash"
    assert table_prices("mistralai/Mixtral-8x7B-Instruct-v0.1") is not None
    assert table_prices("my-own-model") is None
    assert table_prices("gpt-4o-mini-realtime") is None  # a different product, not gpt-4o-mini


def _teacher(model: str, **kw) -> TeacherSection:
    return TeacherSection(name="t", provider="openai", model=model, api_key_env="K", **kw)


def test_teacher_prices_config_overrides_the_table():
    assert teacher_prices(_teacher("gpt-3.5-turbo")).in_per_mtok == 0.5
    over = teacher_prices(_teacher("gpt-3.5-turbo", price_in_per_mtok=0.25))
    assert (over.in_per_mtok, over.out_per_mtok) == (0.25, 1.5)
    assert teacher_prices(_teacher("local", price_in_per_mtok=0.0, price_out_per_mtok=0.0)).out_per_mtok == 0.0
    assert teacher_prices(_teacher("local", price_in_per_mtok=1.0)) is None
    assert teacher_prices(_teacher("local")) is None
    assert cost_usd(None, 10, 10) is None
    assert cost_usd(Prices(in_per_mtok=2.0, out_per_mtok=8.0, source="x"), 1_000_000, 500_000) == pytest.approx(6.0)


def test_batch_prices_use_the_table_batch_rates_or_half_where_the_provider_bills_half():
    from accounting.pricing import batch_prices, cost_fn, mode_prices
    from core.calls import NO_DETAIL

    table = mode_prices(_teacher("gpt-4o-mini"), "batch")
    assert (table.in_per_mtok, table.out_per_mtok, table.cached_in_per_mtok) == (0.075, 0.3, 0.0375)
    assert table.source == "table:gpt-4o-mini, batch rates"
    # No batch rates in the row: OpenAI documents half for every model, and the source says so.
    old = mode_prices(_teacher("gpt-3.5-turbo"), "batch")
    assert (old.in_per_mtok, old.out_per_mtok) == (0.25, 0.75)
    assert old.source == "table:gpt-3.5-turbo, batch at half (openai bills batches at 50 %)"
    own = mode_prices(_teacher("local", price_in_per_mtok=2.0, price_out_per_mtok=8.0), "batch")
    assert (own.in_per_mtok, own.out_per_mtok) == (1.0, 4.0)
    assert mode_prices(_teacher("local", price_in_per_mtok=2.0, price_out_per_mtok=8.0), "sync").in_per_mtok == 2.0
    # A provider that documents no batch price has none; an unknown price stays unknown.
    assert batch_prices(Prices(in_per_mtok=1.0, out_per_mtok=1.0, source="config"), "together") is None
    assert batch_prices(None, "openai") is None
    sync, batch = cost_fn(_teacher("gpt-4o"), "sync"), cost_fn(_teacher("gpt-4o"), "batch")
    assert batch(1000, 200, NO_DETAIL) == pytest.approx(sync(1000, 200, NO_DETAIL) / 2)
    assert cost_fn(_teacher("local"), "batch")(1000, 200, NO_DETAIL) is None
