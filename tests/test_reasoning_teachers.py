"""Reasoning teachers: per-model request shaping, thinking kept out of the text, reasoning and cached tokens priced.

Each provider x (a reasoning model, a plain model) goes through the real adapter to the emulator,
which refuses what the provider refuses, bills thinking and reports cached prompt tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from rich.console import Console

from accounting.pricing import PRICES_CHECKED, cost_usd, stale_table_warning, teacher_prices
from adapters import ChatClient, anthropic
from adapters.client import adapter_for
from core.calls import ChatRequest, Message, Reasoning
from core.capabilities import teacher_request
from core.config import TeacherSection, load_config
from core.errors import ConfigError, Permanent, Unusable
from emulator import EmulatorSpec, run_emulator
from stages.context import RunContext
from stages.forecast import dry_run

ROOT = Path(__file__).resolve().parents[1]
KEY = "emulator-key"
QUESTION = (Message("user", "Tom has 3 apples and buys 4 more. How many apples does he have?"),)
VISIBLE = 40  # the emulator's echo answers are this many tokens

# provider -> (reasoning model, its setting, plain model)
MODELS = {
    "openai": ("o4-mini", "low", "gpt-4o-mini"),
    "anthropic": ("claude-sonnet-4-5", 2048, "claude-3-5-haiku"),
    "gemini": ("gemini-2.5-flash", "low", "gemini-2.0-flash"),
}
# What the body of each may carry: the reasoning model's, the plain model's.
EXPECTED_KEYS = {
    "openai": (
        {"messages", "model", "max_completion_tokens", "reasoning_effort"},
        {"messages", "model", "max_tokens", "temperature", "top_p"},
    ),
    "anthropic": ({"model", "messages", "max_tokens", "thinking"}, {"model", "messages", "max_tokens", "temperature"}),
    "gemini": (
        {"temperature", "topP", "maxOutputTokens", "thinkingConfig"},
        {"temperature", "topP", "maxOutputTokens"},
    ),
}


def _teacher(provider: str, model: str, **kw) -> TeacherSection:
    return TeacherSection(name="t", provider=provider, model=model, **kw)  # type: ignore[arg-type]


def _body(provider: str, request: ChatRequest) -> dict:
    body = json.loads(adapter_for(provider).encode(request))
    return body["generationConfig"] if provider == "gemini" else body


@pytest.mark.parametrize("provider", MODELS)
def test_the_request_carries_exactly_the_parameters_the_model_accepts(provider: str) -> None:
    reasoning_model, setting, plain_model = MODELS[provider]
    thinking = _body(provider, teacher_request(_teacher(provider, reasoning_model, reasoning=setting), QUESTION))
    plain = _body(provider, teacher_request(_teacher(provider, plain_model), QUESTION))
    assert set(thinking) == EXPECTED_KEYS[provider][0]
    assert set(plain) == EXPECTED_KEYS[provider][1]
    # max_tokens is the visible answer: the thinking budget comes on top where the API counts both.
    if provider == "openai":
        assert (thinking["reasoning_effort"], thinking["max_completion_tokens"]) == ("low", 512 + 4096)
        assert (plain["max_tokens"], plain["temperature"]) == (512, 0.8)
    elif provider == "anthropic":
        assert thinking["thinking"] == {"budget_tokens": 2048, "type": "enabled"}
        assert thinking["max_tokens"] == 512 + 2048
    else:
        assert thinking["thinkingConfig"] == {"thinkingBudget": 1024}
        assert thinking["maxOutputTokens"] == 512 + 1024
        assert plain["maxOutputTokens"] == 512


def _spec(**kw) -> EmulatorSpec:
    return EmulatorSpec(output_tokens=VISIBLE, **kw)


@pytest.mark.anyio
@pytest.mark.parametrize("provider", MODELS)
@pytest.mark.parametrize("reasoning", [True, False], ids=["reasoning", "plain"])
async def test_text_excludes_thinking_and_usd_includes_reasoning_tokens(provider: str, reasoning: bool) -> None:
    reasoning_model, setting, plain_model = MODELS[provider]
    teacher = _teacher(provider, reasoning_model, reasoning=setting) if reasoning else _teacher(provider, plain_model)
    request = teacher_request(teacher, QUESTION)
    async with run_emulator(_spec(thinking_tokens=600)) as emu:
        async with ChatClient(provider, api_key=KEY, base_url=emu.base_url(provider)) as client:  # type: ignore[arg-type]
            result = await client.complete(request, timeout_s=10)
        billed = emu.stats().models[teacher.model]
    assert "step by step" not in result.text  # the emulator's thinking block
    assert result.output_tokens == billed.billed_output_tokens
    assert result.input_tokens == billed.billed_input_tokens
    if reasoning:
        # low effort: half of 600 (OpenAI), else the budget-capped 600.
        assert billed.billed_reasoning_tokens == (300 if provider == "openai" else 600)
        assert result.output_tokens == VISIBLE + billed.billed_reasoning_tokens
        if provider == "anthropic":
            # Anthropic reports no split: output minus the visible text, estimated (~4 chars a token).
            assert abs(result.detail.reasoning_tokens - 600) <= VISIBLE
        else:
            assert result.detail.reasoning_tokens == billed.billed_reasoning_tokens
    else:
        assert billed.billed_reasoning_tokens == result.detail.reasoning_tokens == 0
    prices = teacher_prices(teacher)
    assert prices is not None
    usd = cost_usd(prices, result.input_tokens, result.output_tokens, result.detail)
    expected = (
        billed.billed_input_tokens * prices.in_per_mtok + billed.billed_output_tokens * prices.out_per_mtok
    ) / 1e6
    assert usd == pytest.approx(expected)


LONG = (Message("system", "You are a careful teacher. " * 400), Message("user", "What is 3 + 4?"))


@pytest.mark.anyio
@pytest.mark.parametrize("provider,model", [("openai", "gpt-4o-mini"), ("gemini", "gemini-2.5-flash")])
async def test_a_repeated_prompt_prefix_is_reported_cached_and_priced_at_the_cached_rate(
    provider: str, model: str
) -> None:
    teacher = _teacher(provider, model, reasoning="off") if provider == "gemini" else _teacher(provider, model)
    request = teacher_request(teacher, LONG)
    async with run_emulator(_spec()) as emu:
        async with ChatClient(provider, api_key=KEY, base_url=emu.base_url(provider)) as client:  # type: ignore[arg-type]
            first = await client.complete(request, timeout_s=10)
            second = await client.complete(request, timeout_s=10)
        billed = emu.stats().models[model]
    assert first.detail.cache_read_tokens == 0
    assert second.detail.cache_read_tokens >= 1024 and second.detail.cache_read_tokens % 128 == 0
    assert second.detail.cache_read_tokens <= second.input_tokens == first.input_tokens
    assert billed.billed_cache_read_tokens == second.detail.cache_read_tokens
    prices = teacher_prices(teacher)
    assert prices is not None and prices.cached_in_per_mtok is not None
    saved = second.detail.cache_read_tokens * (prices.in_per_mtok - prices.cached_in_per_mtok) / 1e6
    one, two = (cost_usd(prices, r.input_tokens, r.output_tokens, r.detail) for r in (first, second))
    assert one is not None and two is not None
    assert one - two == pytest.approx(saved)


@pytest.mark.anyio
async def test_anthropic_cache_writes_then_reads_outside_input_tokens() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "system": [
            {"type": "text", "text": "You are a careful teacher. " * 400, "cache_control": {"type": "ephemeral"}}
        ],
        "messages": [{"role": "user", "content": "What is 3 + 4?"}],
    }
    async with run_emulator(_spec()) as emu, aiohttp.ClientSession() as session:
        raw = []
        for _ in range(2):
            async with session.post(emu.url + "/v1/messages", json=body, headers={"x-api-key": KEY}) as response:
                raw.append(await response.read())
    usage = [json.loads(r)["usage"] for r in raw]
    assert usage[0]["cache_creation_input_tokens"] > 1024 and usage[0]["cache_read_input_tokens"] == 0
    assert usage[1]["cache_read_input_tokens"] == usage[0]["cache_creation_input_tokens"]
    results = [anthropic.decode(200, {}, r, 0.0) for r in raw]
    assert results[0].detail.cache_write_tokens == usage[0]["cache_creation_input_tokens"]
    assert results[1].detail.cache_read_tokens == usage[1]["cache_read_input_tokens"]
    # The prompt is all three parts together, as billed.
    assert (
        results[0].input_tokens
        == results[1].input_tokens
        == usage[1]["input_tokens"] + usage[1]["cache_read_input_tokens"]
    )
    prices = teacher_prices(_teacher("anthropic", "claude-sonnet-4-5"))
    cached = cost_usd(prices, results[1].input_tokens, 0, results[1].detail)
    written = cost_usd(prices, results[0].input_tokens, 0, results[0].detail)
    assert cached is not None and written is not None and cached < written


REFUSALS = [
    # OpenAI o-series: the old token field, a temperature; a plain model: reasoning_effort.
    ("openai", ChatRequest(model="o3", messages=QUESTION), "Unsupported parameter: 'max_tokens' is not supported"),
    (
        "openai",
        ChatRequest(model="o3", messages=QUESTION, token_field="max_completion_tokens"),
        "Unsupported value: 'temperature' does not support 0.8 with this model",
    ),
    (
        "openai",
        ChatRequest(model="gpt-4o", messages=QUESTION, reasoning=Reasoning(effort="low")),
        "'reasoning_effort' is not supported",
    ),
    # Anthropic: thinking with a temperature, a budget below 1024, thinking on a model without it.
    (
        "anthropic",
        ChatRequest(model="claude-sonnet-4-5", messages=QUESTION, reasoning=Reasoning(budget_tokens=2048)),
        "`temperature` may only be set to 1 when thinking is enabled",
    ),
    (
        "anthropic",
        ChatRequest(
            model="claude-sonnet-4-5", messages=QUESTION, temperature=None, reasoning=Reasoning(budget_tokens=500)
        ),
        "greater than or equal to 1024",
    ),
    (
        "anthropic",
        ChatRequest(
            model="claude-3-5-haiku", messages=QUESTION, temperature=None, reasoning=Reasoning(budget_tokens=2048)
        ),
        "does not support thinking",
    ),
    # Claude Opus 4.1 writes at most 32000 tokens, thinking included.
    (
        "anthropic",
        ChatRequest(
            model="claude-opus-4-1-20250805",
            messages=QUESTION,
            temperature=None,
            max_tokens=512,
            reasoning=Reasoning(budget_tokens=32000),
        ),
        "max_tokens: 32512 > 32000, which is the maximum allowed number of output tokens",
    ),
    # Claude Opus 4.7 and 4.8 take adaptive thinking only.
    (
        "anthropic",
        ChatRequest(
            model="claude-opus-4-7", messages=QUESTION, temperature=None, reasoning=Reasoning(budget_tokens=2048)
        ),
        '"thinking.type.enabled" is not supported for this model',
    ),
    (
        "anthropic",
        ChatRequest(
            model="claude-fable-5-1", messages=QUESTION, temperature=None, reasoning=Reasoning(budget_tokens=2048)
        ),
        '"thinking.type.enabled" is not supported for this model',
    ),
    # Gemini 2.5 Pro cannot turn thinking off.
    (
        "gemini",
        ChatRequest(model="gemini-2.5-pro", messages=QUESTION, reasoning=Reasoning(budget_tokens=0)),
        "Budget 0 is invalid",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize("provider,request_,text", REFUSALS)
async def test_the_emulator_refuses_what_the_provider_refuses(provider: str, request_: ChatRequest, text: str) -> None:
    async with run_emulator(_spec()) as emu:
        async with ChatClient(provider, api_key=KEY, base_url=emu.base_url(provider)) as client:  # type: ignore[arg-type]
            with pytest.raises(Permanent) as refused:
                await client.complete(request_, timeout_s=10)
        assert emu.stats().total.billed_requests == 0
    assert refused.value.http_status == 400
    assert text in str(refused.value)


@pytest.mark.anyio
@pytest.mark.parametrize("provider", ["openai", "gemini"])
async def test_thinking_that_eats_the_limit_leaves_no_text_and_is_billed(provider: str) -> None:
    # OpenAI's effort has no hard budget: its reasoning runs into max_completion_tokens. Gemini 2.5
    # without a thinking config thinks as much as it likes within maxOutputTokens (what every
    # request was before capabilities: the empty answers).
    if provider == "openai":
        request = teacher_request(_teacher("openai", "o4-mini", reasoning="low"), QUESTION)
    else:
        request = ChatRequest(model="gemini-2.5-flash", messages=QUESTION, max_tokens=512)
    async with run_emulator(_spec(thinking_tokens=100_000)) as emu:
        async with ChatClient(provider, api_key=KEY, base_url=emu.base_url(provider)) as client:  # type: ignore[arg-type]
            with pytest.raises(Unusable) as cut:
                await client.complete(request, timeout_s=10)
        billed = emu.stats().models[request.model]
    assert cut.value.kind == "truncated"
    assert cut.value.output_tokens == billed.billed_output_tokens == request.output_limit
    assert billed.billed_reasoning_tokens == request.output_limit
    assert cut.value.detail is not None and cut.value.detail.reasoning_tokens == request.output_limit


@pytest.mark.anyio
@pytest.mark.parametrize("provider,model", [("anthropic", "claude-sonnet-4-5"), ("gemini", "gemini-2.5-flash")])
async def test_a_thinking_budget_holds_the_thinking_back_and_leaves_the_answer_its_tokens(
    provider: str, model: str
) -> None:
    request = teacher_request(_teacher(provider, model, reasoning=2048), QUESTION)
    async with run_emulator(_spec(thinking_tokens=100_000)) as emu:
        async with ChatClient(provider, api_key=KEY, base_url=emu.base_url(provider)) as client:  # type: ignore[arg-type]
            result = await client.complete(request, timeout_s=10)
        billed = emu.stats().models[model]
    assert billed.billed_reasoning_tokens == 2048
    assert result.output_tokens == 2048 + VISIBLE and result.text


BAD_TEACHERS = [
    ('model = "gpt-4o"\nreasoning = "low"', "`reasoning` = 'low': model 'gpt-4o' takes no reasoning setting"),
    ('model = "o3"\ntemperature = 0.7', "`temperature` = 0.7: model 'o3' refuses it"),
    ('provider = "anthropic"\nmodel = "claude-sonnet-4-5"\nreasoning = 512', "`reasoning` = 512: below the minimum"),
    ('provider = "anthropic"\nmodel = "claude-sonnet-4-5"\nreasoning = 64000', "passes the 64000 output tokens"),
    (
        'provider = "anthropic"\nmodel = "claude-sonnet-4-5"\nreasoning = "low"\ntemperature = 0.5',
        "`temperature` = 0.5",
    ),
    # Opus 4 and 4.1 stop at 32000 output tokens, the 4.6 models at 128000 (not the family's 64000).
    ('provider = "anthropic"\nmodel = "claude-opus-4-1"\nreasoning = 32000', "passes the 32000 output tokens"),
    ('provider = "anthropic"\nmodel = "claude-opus-4-20250514"\nreasoning = 32000', "passes the 32000 output"),
    ('model = "o3"\nreasoning = "low"\nreasoning_tokens_estimate = -1', "`reasoning_tokens_estimate` = -1"),
    ('provider = "gemini"\nmodel = "gemini-2.5-pro"\nreasoning = "off"', "cannot turn its reasoning off"),
    ('provider = "anthropic"\nmodel = "claude-opus-5-5"\nreasoning = "off"', "cannot turn its reasoning off"),
    ('provider = "anthropic"\nmodel = "claude-fable-5-1"\ntemperature = 0.5', "`temperature` = 0.5"),
    ('provider = "gemini"\nmodel = "gemini-2.5-pro"\nreasoning = 40000', "above the maximum thinking budget"),
]


@pytest.mark.parametrize("teacher,message", BAD_TEACHERS)
def test_a_setting_the_model_refuses_is_a_one_line_config_error_naming_teacher_and_key(
    tmp_path: Path, teacher: str, message: str
) -> None:
    lines = dict(line.split(" = ", 1) for line in teacher.splitlines())
    provider = lines.pop("provider", '"openai"')
    body = "\n".join(f"{k} = {v}" for k, v in lines.items())
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[run]\nname = "x"\nout_dir = "{tmp_path / "run"}"\n[[datasets]]\ntask = "svamp"\n'
        f'[[teachers]]\nname = "bad"\nprovider = {provider}\n{body}\n'
        '[[teachers]]\nname = "ok"\nprovider = "openai"\nmodel = "gpt-4o-mini"\n'
    )
    with pytest.raises(ConfigError) as error:
        load_config(cfg)
    text = str(error.value)
    assert "\n" not in text
    assert "teacher 'bad'" in text and message in text and "$.teachers[0]" in text


def test_reasoning_teachers_dry_run_shows_cost_and_thinking_per_dataset(tmp_path: Path) -> None:
    gsm8k = tmp_path / "gsm8k"
    gsm8k.mkdir()
    rows = [
        {"question": f"Ann has {n} pens and buys 2 more. How many pens?", "answer": f"#### {n + 2}"} for n in range(6)
    ]
    (gsm8k / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = (ROOT / "configs" / "reasoning-teachers.toml").read_text()
    text = text.replace('out_dir = "../runs/reasoning-teachers"', f'out_dir = "{tmp_path / "run"}"')
    text = text.replace('source = "hf:ChilleD/SVAMP"', 'source = "demo"')
    text = text.replace('source = "hf:openai/gsm8k:main"', f'source = "{gsm8k}"')
    cfg_path = tmp_path / "reasoning-teachers.toml"
    cfg_path.write_text(text)
    cfg = load_config(cfg_path)
    assert [t.reasoning for t in cfg.teachers] == ["low", "low", "low"]
    console = Console(record=True, width=250)
    fc = dry_run(RunContext(cfg_path, cfg), console=console)
    printed = console.export_text()
    assert [ds.task for ds in fc.datasets] == ["svamp", "gsm8k"]
    for ds in fc.datasets:
        assert ds.usd is not None and ds.usd > 0
        assert f"{ds.task} total" in printed
        # Each teacher's thinking is forecast and priced as output.
        assert all(r.reasoning_tokens > 0 for r in ds.rows)
    assert "of which reasoning" in printed


def test_price_table_is_dated_and_says_once_when_stale() -> None:
    from datetime import timedelta

    assert stale_table_warning(PRICES_CHECKED + timedelta(days=30)) is None
    warning = stale_table_warning(PRICES_CHECKED + timedelta(days=200))
    assert warning is not None and PRICES_CHECKED.isoformat() in warning and "\n" not in warning
    assert teacher_prices(_teacher("openai", "my-own-model")) is None  # unknown stays unknown


@pytest.mark.anyio
async def test_a_teach_run_with_reasoning_teachers_bills_and_reports_their_thinking(
    tmp_path: Path, monkeypatch
) -> None:
    from accounting.pricing import table_prices
    from emulator.fair_script import FairScript
    from reports.cost import build_cost_report, ledger_connection
    from stages.job import run_job
    from tasks import load_split
    from tests.test_pipeline import authors_file

    monkeypatch.setenv("COMMITTEE_TEST_KEY", "sk-test-secret")
    questions = load_split("svamp", "demo", "train")[:12]
    mistakes = authors_file(tmp_path / "svamp.json", "svamp", questions)
    models = {
        "o4mini": ("openai", "o4-mini"),
        "gemini": ("gemini", "gemini-2.5-flash"),
        "claude": ("anthropic", "claude-sonnet-4-5"),
    }
    async with run_emulator(EmulatorSpec(), FairScript(questions)) as emu:
        text = f'[run]\nname = "t"\nout_dir = "run"\n[[datasets]]\ntask = "svamp"\nmistakes = "{mistakes}"\n'
        for name, (provider, model) in models.items():
            text += (
                f'[[teachers]]\nname = "{name}"\nprovider = "{provider}"\nmodel = "{model}"\nreasoning = "low"\n'
                f'base_url = "{emu.base_url(provider)}"\napi_key_env = "COMMITTEE_TEST_KEY"\n'
            )
        cfg_path = tmp_path / "run.toml"
        cfg_path.write_text(text)
        ctx = RunContext(cfg_path, load_config(cfg_path), progress=False)
        await run_job(ctx, "teach")
        stats = emu.stats().models
    conn = ledger_connection(ctx.out_dir / "store.sqlite")
    try:
        report = build_cost_report(conn)
    finally:
        conn.close()
    rows = report.datasets[0].rows
    expected_usd = 0.0
    for name, (_, model) in models.items():
        mine = [r for r in rows if r.teacher == name]
        billed = stats[model]
        assert billed.billed_reasoning_tokens > 0
        assert sum(r.output_tokens for r in mine) == billed.billed_output_tokens
        if name != "claude":  # Anthropic reports no split: ours is an estimate
            assert sum(r.reasoning_tokens for r in mine) == billed.billed_reasoning_tokens
        prices = table_prices(model)
        assert prices is not None
        expected_usd += (
            billed.billed_input_tokens * prices.in_per_mtok + billed.billed_output_tokens * prices.out_per_mtok
        ) / 1e6
        reasoning_usd = sum(r.reasoning_usd for r in mine)
        assert reasoning_usd == pytest.approx(sum(r.reasoning_tokens for r in mine) * prices.out_per_mtok / 1e6)
    assert report.total_usd == pytest.approx(expected_usd, rel=1e-6)
    total = report.datasets[0].total
    assert total.usd is not None and 0 < total.reasoning_usd < total.usd


def test_the_worst_case_forecast_bills_each_call_its_whole_output_limit_once(tmp_path: Path) -> None:
    """The pilot's cap check forecasts every answer as long as it may be: max_tokens plus the thinking budget, not
    that plus the expected thinking again; an expected length counts its thinking within the output limit."""
    from accounting.forecast import forecast
    from core.config import Config, DatasetSection, RunSection
    from core.records import Mistake

    mistakes = [
        Mistake(id="1", task="svamp", question="Tom has 3 apples and buys 4 more.", gold="7",
                student_answer="6", student_final_answer="6")
    ]  # fmt: skip
    teachers = [
        _teacher("anthropic", "claude-sonnet-4-5", reasoning=2048, max_tokens=300),
        TeacherSection(name="u", provider="openai", model="o4-mini", reasoning="low", max_tokens=300),
    ]
    cfg = Config(run=RunSection(name="x", out_dir=str(tmp_path)), datasets=[DatasetSection(task="svamp")],
                 teachers=teachers)  # fmt: skip
    worst = forecast(cfg, {"svamp": mistakes}, output_tokens={"rationale": float("inf"), "feedback": float("inf"),
                                                               "review": float("inf")})  # fmt: skip
    limits = {t.name: teacher_request(t, ()).output_limit for t in teachers}
    for row in worst.datasets[0].rows:
        assert row.output_tokens == row.calls * limits[row.teacher], row
        assert row.reasoning_tokens == row.calls * (limits[row.teacher] - 300), row
    # An expected visible length longer than max_tokens is cut to it; the thinking estimate comes on top.
    given = forecast(cfg, {"svamp": mistakes}, output_tokens={"rationale": 1000.0, "feedback": 1000.0,
                                                              "review": 1000.0})  # fmt: skip
    claude = next(r for r in given.datasets[0].rows if r.teacher == "t" and r.stage == "rationale")
    assert claude.output_tokens - claude.reasoning_tokens == 300
    assert 0 < claude.reasoning_tokens <= 2048


@pytest.mark.anyio
@pytest.mark.parametrize("model", ["claude-opus-4-7", "claude-opus-4-8-20260528"])
async def test_an_adaptive_only_claude_thinks_by_effort_within_max_tokens_and_is_billed(model: str) -> None:
    """Opus 4.7 and 4.8 refuse `budget_tokens` and sampling parameters: the effort goes as `output_config.effort`
    with `thinking: {type: adaptive}`, and the effort's allowance comes on top of max_tokens."""
    teacher = _teacher("anthropic", model, reasoning="low")
    request = teacher_request(teacher, QUESTION)
    body = _body("anthropic", request)
    assert set(body) == {"model", "messages", "max_tokens", "thinking", "output_config"}
    assert body["thinking"] == {"type": "adaptive"} and body["output_config"] == {"effort": "low"}
    assert body["max_tokens"] == 512 + request.output_limit - request.max_tokens > 512
    async with run_emulator(_spec(thinking_tokens=600)) as emu:
        async with ChatClient("anthropic", api_key=KEY, base_url=emu.base_url("anthropic")) as client:
            result = await client.complete(request, timeout_s=10)
        billed = emu.stats().models[model]
    assert "step by step" not in result.text
    assert billed.billed_reasoning_tokens == 300  # low: half of 600
    assert result.output_tokens == VISIBLE + 300
    if "4-8" in model:  # Opus 4.7's price is not in the table: "unknown", never 0
        prices = teacher_prices(teacher)
        assert prices is not None and prices.out_per_mtok == 25.0
    # Off by default, as at the provider; a temperature is a config error naming teacher and key.
    assert "thinking" not in _body("anthropic", teacher_request(_teacher("anthropic", model), QUESTION))
    with pytest.raises(ValueError, match="`temperature`"):
        _teacher("anthropic", model, temperature=0.5)


def test_a_teacher_that_uses_no_reasoning_keeps_the_content_keys_older_stores_hold() -> None:
    """The keys below were computed by the store before reasoning teachers (5735efc): a rerun of an old config
    finds its answers and buys nothing twice, a Claude that could think included (thinking is opt-in)."""
    from store.calls import request_key

    plain = _teacher("openai", "gpt-4o-mini")
    messages = (Message("system", "Be brief."), Message("user", "What is 3 + 4?"))
    assert request_key("openai", teacher_request(plain, messages)) == (
        "d5eecb3099449ccc46f5c6f4c36908a775daf9ea31e510dc64903720df2accb6"
    )
    claude = _teacher("anthropic", "claude-sonnet-4-5", temperature=0.7, top_p=0.9, max_tokens=256)
    assert request_key("anthropic", teacher_request(claude, (Message("user", "What is 3 + 4?"),))) == (
        "af4debbe5ec81a1cc5e1f826a4e4bf510de38d04a08121ceb3d62049edb23783"
    )
    # Flash-Lite does not think unless asked: its default sends no thinking config, the request it always sent.
    lite = teacher_request(_teacher("gemini", "gemini-2.5-flash-lite"), (Message("user", "What is 3 + 4?"),))
    assert "thinkingConfig" not in _body("gemini", lite)
    assert request_key("gemini", lite) == "11035cf045ec9d7f26cdae0ff71fd570df0c6650c822dbc5b2bed75a0d22388e"
    # Asked for explicitly, "off" is sent.
    off = teacher_request(_teacher("gemini", "gemini-2.5-flash-lite", reasoning="off"), QUESTION)
    assert _body("gemini", off)["thinkingConfig"] == {"thinkingBudget": 0}


def test_a_claude_4_6_takes_a_thinking_budget_up_to_its_128k_output() -> None:
    teacher = _teacher("anthropic", "claude-sonnet-4-6", reasoning=100_000)
    assert teacher_request(teacher, QUESTION).output_limit == 100_512


@pytest.mark.anyio
async def test_the_emulated_flash_lite_thinks_only_when_given_a_budget() -> None:
    """Gemini 2.5 Flash-Lite does not think by default (https://github.com/cline/cline/issues/7735 quotes the docs);
    Flash does (dynamic)."""
    plain = (Message("user", "What is 3 + 4?"),)
    async with run_emulator(_spec(thinking_tokens=200)) as emu:
        async with ChatClient("gemini", api_key=KEY, base_url=emu.base_url("gemini")) as client:
            for model in ("gemini-2.5-flash-lite", "gemini-2.5-flash"):
                await client.complete(ChatRequest(model=model, messages=plain, max_tokens=2048), timeout_s=10)
            budget = Reasoning(budget_tokens=1024)
            await client.complete(
                ChatRequest(model="gemini-2.5-flash-lite", messages=QUESTION, reasoning=budget), timeout_s=10
            )
        stats = emu.stats().models
    assert stats["gemini-2.5-flash"].billed_reasoning_tokens == 200
    assert stats["gemini-2.5-flash-lite"].billed_reasoning_tokens == 200  # the budgeted call only


@pytest.mark.anyio
async def test_a_claude_5_thinks_unasked_so_its_effort_is_always_sent_and_bounded() -> None:
    """The Claude 5 generation thinks adaptively when `thinking` is unset, inside max_tokens: a plain request
    would spend the visible answer's tokens on thinking. Its effort (default medium) goes explicitly, with the
    allowance on top of max_tokens, so the worst case is known; its price is in the table."""
    plain = ChatRequest(model="claude-opus-5-5", messages=QUESTION, temperature=None, max_tokens=2048)
    async with run_emulator(_spec(thinking_tokens=600)) as emu:
        async with ChatClient("anthropic", api_key=KEY, base_url=emu.base_url("anthropic")) as client:
            result = await client.complete(plain, timeout_s=10)
        assert emu.stats().models["claude-opus-5-5"].billed_reasoning_tokens == 1200  # unasked, at high effort
    assert result.output_tokens == VISIBLE + 1200
    teacher = _teacher("anthropic", "claude-opus-5-5")
    request = teacher_request(teacher, QUESTION)
    body = _body("anthropic", request)
    assert set(body) == {"model", "messages", "max_tokens", "thinking", "output_config"}
    assert body["thinking"] == {"type": "adaptive"} and body["output_config"] == {"effort": "medium"}
    assert body["max_tokens"] == 512 + 16384
    prices = teacher_prices(teacher)
    assert prices is not None and (prices.in_per_mtok, prices.out_per_mtok, prices.cached_in_per_mtok) == (4, 20, 0.2)
