"""The official SDKs, unchanged, against the emulator: a plain answer, a 429 they retry, usage read back,
and the answers without usable text in the shapes each SDK parses."""

from __future__ import annotations

import pytest

from emulator import EmulatorSpec, Faults, ModelLimits, run_emulator

KEY = "emulator-key"
# One request in the bucket, refilled in 2 s: the second call of a pair, sent at once, gets a 429
# with a retry-after every SDK below honours before its retry (2 s leaves room for a loaded machine).
ONE_AT_A_TIME = ModelLimits(rpm=30, burst_s=2.0)
QUESTION = "What is 2 + 2?"


@pytest.fixture(autouse=True)
def _no_provider_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDKs read keys and base URLs from the environment: only what a test passes counts.
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "GOOGLE_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_GENAI_USE_VERTEXAI",
    ):
        monkeypatch.delenv(name, raising=False)


# --- openai ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_openai_sdk_answers_retries_a_429_and_reads_usage() -> None:
    openai = pytest.importorskip("openai")
    async with run_emulator(EmulatorSpec(models={"m": ONE_AT_A_TIME})) as emu:
        client = openai.AsyncOpenAI(api_key=KEY, base_url=emu.base_url("openai"), max_retries=3)
        async with client:
            answers = [
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": f"{QUESTION} ({i})"}], max_tokens=64
                )
                for i in range(2)
            ]
        stats = emu.stats().models["m"]
    assert answers[0].choices[0].message.content == f"Echo: {QUESTION} (0)"
    assert answers[1].choices[0].finish_reason == "stop"
    assert stats.rejected_429 >= 1 and stats.completed == 2
    assert sum(a.usage.prompt_tokens for a in answers) == stats.billed_input_tokens
    assert sum(a.usage.completion_tokens for a in answers) == stats.billed_output_tokens


@pytest.mark.anyio
async def test_openai_sdk_parses_refusals_filters_and_reasoning_that_ate_max_tokens() -> None:
    openai = pytest.importorskip("openai")
    seen = {}
    for fault in ("refusal", "filtered", "truncated"):
        spec = EmulatorSpec(faults=Faults(**{f"{fault}_rate": 1.0}))
        async with run_emulator(spec) as emu:
            async with openai.AsyncOpenAI(api_key=KEY, base_url=emu.base_url("openai"), max_retries=0) as client:
                answer = await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": QUESTION}], max_tokens=32
                )
        choice = answer.choices[0]
        seen[fault] = (choice.finish_reason, choice.message.content or "", bool(choice.message.refusal))
    assert seen == {
        "refusal": ("stop", "", True),
        "filtered": ("content_filter", "", False),
        "truncated": ("length", "", False),
    }
    assert answer.usage.completion_tokens == 32
    assert answer.usage.completion_tokens_details.reasoning_tokens == 32


# --- anthropic -------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("credential", ["api_key", "auth_token"])
async def test_anthropic_sdk_with_either_credential_answers_retries_a_429_and_reads_usage(credential: str) -> None:
    anthropic = pytest.importorskip("anthropic")
    async with run_emulator(EmulatorSpec(models={"m": ONE_AT_A_TIME})) as emu:
        # api_key= sends x-api-key; auth_token= sends Authorization: Bearer.
        client = anthropic.AsyncAnthropic(**{credential: KEY}, base_url=emu.url, max_retries=3)
        async with client:
            answers = [
                await client.messages.create(
                    model="m", max_tokens=64, messages=[{"role": "user", "content": f"{QUESTION} ({i})"}]
                )
                for i in range(2)
            ]
        stats = emu.stats()
    assert stats.unauthorized == 0
    assert answers[0].content[0].text == f"Echo: {QUESTION} (0)"
    assert answers[1].stop_reason == "end_turn"
    m = stats.models["m"]
    assert m.rejected_429 >= 1 and m.completed == 2
    assert sum(a.usage.input_tokens for a in answers) == m.billed_input_tokens
    assert sum(a.usage.output_tokens for a in answers) == m.billed_output_tokens


@pytest.mark.anyio
async def test_anthropic_sdk_parses_refusals_and_thinking_that_ate_max_tokens() -> None:
    anthropic = pytest.importorskip("anthropic")
    seen = {}
    for fault in ("refusal", "truncated"):
        async with run_emulator(EmulatorSpec(faults=Faults(**{f"{fault}_rate": 1.0}))) as emu:
            async with anthropic.AsyncAnthropic(api_key=KEY, base_url=emu.url, max_retries=0) as client:
                answer = await client.messages.create(
                    model="m", max_tokens=32, messages=[{"role": "user", "content": QUESTION}]
                )
        seen[fault] = (answer.stop_reason, [block.type for block in answer.content])
    assert seen == {"refusal": ("refusal", []), "truncated": ("max_tokens", ["thinking"])}
    assert answer.usage.output_tokens == 32


# --- google-genai ----------------------------------------------------------------------------------


def _genai_client(genai, types, url: str, api_version: str):
    retry = types.HttpRetryOptions(attempts=5, initial_delay=1.0, max_delay=2.5)
    options = types.HttpOptions(base_url=url, api_version=api_version, retry_options=retry)
    return genai.Client(api_key=KEY, http_options=options)


@pytest.mark.anyio
@pytest.mark.parametrize("api_version", ["v1beta", "v1"])
async def test_google_genai_sdk_answers_retries_a_429_and_reads_usage(api_version: str) -> None:
    genai = pytest.importorskip("google.genai")
    types = pytest.importorskip("google.genai.types")
    async with run_emulator(EmulatorSpec(models={"m": ONE_AT_A_TIME})) as emu:
        config = types.GenerateContentConfig(max_output_tokens=64)
        async with _genai_client(genai, types, emu.url, api_version).aio as client:
            answers = [
                await client.models.generate_content(model="m", contents=f"{QUESTION} ({i})", config=config)
                for i in range(2)
            ]
        stats = emu.stats()
    assert stats.bad_requests == 0
    assert answers[0].text == f"Echo: {QUESTION} (0)"
    assert answers[1].candidates[0].finish_reason == types.FinishReason.STOP
    m = stats.models["m"]
    assert m.rejected_429 >= 1 and m.completed == 2
    assert sum(a.usage_metadata.prompt_token_count for a in answers) == m.billed_input_tokens
    assert sum(a.usage_metadata.candidates_token_count for a in answers) == m.billed_output_tokens


@pytest.mark.anyio
async def test_google_genai_sdk_parses_safety_blocks_and_thinking_that_ate_max_tokens() -> None:
    genai = pytest.importorskip("google.genai")
    types = pytest.importorskip("google.genai.types")
    seen = {}
    for fault in ("filtered", "truncated"):
        async with run_emulator(EmulatorSpec(faults=Faults(**{f"{fault}_rate": 1.0}))) as emu:
            async with _genai_client(genai, types, emu.url, "v1beta").aio as client:
                answer = await client.models.generate_content(
                    model="m", contents=QUESTION, config=types.GenerateContentConfig(max_output_tokens=32)
                )
        candidate = answer.candidates[0]
        parts = candidate.content.parts if candidate.content else None
        seen[fault] = (candidate.finish_reason, parts or [])
    assert seen == {"filtered": (types.FinishReason.SAFETY, []), "truncated": (types.FinishReason.MAX_TOKENS, [])}
    assert answer.usage_metadata.thoughts_token_count == 32
