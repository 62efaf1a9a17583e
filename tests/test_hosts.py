"""OpenAI-wire hosts: Azure OpenAI's URL and header against the emulator, OpenRouter's headers,
each host's rate-limit headers, and the config errors a host setting can make."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import msgspec
import pytest

from adapters import make_client
from adapters.classify import rate_limit_info
from adapters.hosts import auth_headers, chat_url
from bench.forecast_accuracy import write_demo_mistakes
from core.calls import ChatRequest, HostRoute, Message
from core.config import ConfigError, load_config
from emulator import EmulatorSpec, ModelLimits, run_emulator
from engine.lane import Lane, LaneLimits
from stages.context import RunContext
from stages.job import run_job
from stages.teachers import check_teachers
from tasks import load_split

KEY = "sk-secret-azure-key-123"
AZURE = HostRoute(host="azure", deployment="team-gpt4o", api_version="2024-10-21")
REQUEST = ChatRequest(model="gpt-4o", messages=(Message("user", "What is 2 + 3?"),), max_tokens=16)


@pytest.mark.anyio
async def test_azure_deployment_url_and_api_key_header_reach_the_emulator():
    spec = EmulatorSpec(models={"team-gpt4o": ModelLimits(rpm=600, tpm=60_000, header_dialect="azure")})
    async with run_emulator(spec) as emu:
        async with make_client("openai", api_key=KEY, base_url=emu.url, route=AZURE) as client:
            result = await client.complete(REQUEST, timeout_s=10)
        stats = emu.stats()
    assert result.text
    # The deployment in the path picked the model; the key went in the api-key header.
    assert stats.models["team-gpt4o"].completed == 1
    assert stats.unauthorized == 0
    # Azure reports what remains, not the limits.
    info = result.rate_limit
    assert info is not None and info.remaining_requests is not None and info.remaining_tokens is not None
    assert info.limit_requests is None and info.limit_tokens is None
    assert info.reset_tokens_s is not None


@pytest.mark.anyio
async def test_azure_without_api_key_header_or_api_version_is_refused_by_the_emulator():
    async with run_emulator(EmulatorSpec()) as emu:
        # The OpenAI Bearer header at Azure's URL: no api-key header, so 401.
        bearer = HostRoute(host="openai")
        async with make_client("openai", api_key=KEY, base_url=emu.url + "/openai/deployments/d", route=bearer) as c:
            with pytest.raises(Exception, match="HTTP 401") as exc:
                await c.complete(REQUEST, timeout_s=10)
        assert KEY not in str(exc.value)
        no_version = HostRoute(host="azure", deployment="d", api_version="")
        async with make_client("openai", api_key=KEY, base_url=emu.url, route=no_version) as c:
            with pytest.raises(Exception, match="api-version"):
                await c.complete(REQUEST, timeout_s=10)


def test_azure_url_and_headers_keep_the_key_out_of_the_url():
    url = chat_url(AZURE, "https://res.openai.azure.com/")
    assert url == "https://res.openai.azure.com/openai/deployments/team-gpt4o/chat/completions?api-version=2024-10-21"
    headers = auth_headers(AZURE, KEY)
    assert headers["api-key"] == KEY and "Authorization" not in headers
    assert KEY not in url


def test_openrouter_attribution_headers_are_optional():
    plain = auth_headers(HostRoute(host="openrouter"), KEY)
    assert plain["Authorization"] == f"Bearer {KEY}" and "HTTP-Referer" not in plain and "X-Title" not in plain
    named = auth_headers(HostRoute(host="openrouter", site_url="https://example.org", site_title="Committee"), KEY)
    assert named["HTTP-Referer"] == "https://example.org" and named["X-Title"] == "Committee"


def test_default_base_urls_per_host():
    for host, base in (
        ("openrouter", "https://openrouter.ai/api/v1"),
        ("groq", "https://api.groq.com/openai/v1"),
        ("together", "https://api.together.xyz/v1"),
        ("deepinfra", "https://api.deepinfra.com/v1/openai"),
    ):
        client = make_client("openai", api_key=KEY, route=HostRoute(host=host))  # type: ignore[arg-type]
        assert client.base_url == base
        assert KEY not in repr(client)


def test_rate_limit_headers_of_each_host():
    azure = rate_limit_info(
        {"x-ratelimit-remaining-requests": "45", "x-ratelimit-remaining-tokens": "-1", "x-ratelimit-reset-tokens": "30"}
    )
    assert azure is not None and azure.remaining_requests == 45
    assert azure.remaining_tokens is None  # -1: the figure does not apply
    assert azure.reset_tokens_s == 30.0 and azure.limit_requests is None
    reset_ms = str(int((time.time() + 10) * 1000))
    openrouter = rate_limit_info(
        {"x-ratelimit-limit": "200", "x-ratelimit-remaining": "3", "x-ratelimit-reset": reset_ms}
    )
    assert openrouter is not None and openrouter.limit_requests == 200 and openrouter.remaining_requests == 3
    assert 8 < (openrouter.reset_requests_s or 0) <= 10
    # Together's figures are per second (https://docs.together.ai/docs/rate-limits): 10 a second is 600 a minute.
    together = rate_limit_info(
        {
            "x-ratelimit-limit": "10",
            "x-ratelimit-remaining": "9",
            "x-ratelimit-reset": "0.1",
            "x-tokenlimit-limit": "1000",
            "x-tokenlimit-remaining": "400.5",
        }
    )
    assert together is not None and together.reset_requests_s == 0.1
    assert together.limit_requests == 600 and together.remaining_requests == 540
    assert together.limit_tokens == 60_000 and together.remaining_tokens == 24_030
    # OpenAI's own keep their durations.
    openai = rate_limit_info({"x-ratelimit-limit-requests": "500", "x-ratelimit-reset-requests": "6m0s"})
    assert openai is not None and openai.limit_requests == 500 and openai.reset_requests_s == 360.0


@pytest.mark.anyio
async def test_together_per_second_headers_give_the_lane_its_per_minute_limits():
    spec = EmulatorSpec(models={"m": ModelLimits(rpm=600, tpm=120_000, header_dialect="together")})
    async with run_emulator(spec) as emu:
        route = HostRoute(host="together")
        async with make_client("openai", api_key=KEY, base_url=emu.base_url("openai"), route=route) as client:
            lane = Lane("together", client, LaneLimits())
            with anyio.fail_after(30):
                outcome = await lane.call(msgspec.structs.replace(REQUEST, model="m"))
    assert outcome.status == "completed"
    # Read as per minute, 10 requests a second would throttle the lane sixty-fold.
    assert lane.stats.rpm == 600 and lane.stats.tpm == 120_000


BASE = '[run]\nname = "t"\nout_dir = "out"\n[[datasets]]\ntask = "svamp"\n'
OTHER = '[[teachers]]\nname = "b"\nprovider = "gemini"\nmodel = "g"\napi_key_env = "K_b"\n'


def _config(tmp_path: Path, teacher: str, extra: str = "") -> Path:
    path = tmp_path / "run.toml"
    head = '[[teachers]]\nname = "az"\nprovider = "openai"\nmodel = "gpt-4o"\napi_key_env = "K_a"\n'
    path.write_text(BASE + head + teacher + OTHER + extra)
    return path


@pytest.mark.parametrize(
    ("teacher", "expected"),
    [
        ('host = "azure"\nbase_url = "https://r.openai.azure.com"\ndeployment = "d"\n', "needs `api_version`"),
        ('host = "azure"\nbase_url = "https://r.openai.azure.com"\napi_version = "2024-10-21"\n', "needs `deployment`"),
        ('host = "azure"\ndeployment = "d"\napi_version = "2024-10-21"\n', "needs `base_url`"),
        ('deployment = "d"\n', "`deployment` is for host = 'azure' only"),
        ('host = "vllm"\n', "host = 'vllm' needs `base_url`"),
        ('host = "groq"\nsite_title = "x"\n', "`site_title` is for host = 'openrouter' only"),
        ('host = "warp"\n', "$.teachers[0].host"),
    ],
)
def test_bad_host_settings_name_teacher_and_key(tmp_path, teacher, expected):
    with pytest.raises(ConfigError) as exc:
        load_config(_config(tmp_path, teacher))
    message = str(exc.value)
    assert expected in message and "\n" not in message
    if "$." not in expected:
        assert "teacher 'az'" in message and "$.teachers[0]" in message


def test_host_on_another_wire_is_refused(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(BASE + OTHER + OTHER.replace('"b"', '"c"').replace('"g"', '"g2"') + 'host = "azure"\n')
    with pytest.raises(ConfigError, match=r"teacher 'c': `host` is for provider = 'openai'.*\$\.teachers\[1\]"):
        load_config(path)


@pytest.mark.parametrize(
    ("teacher", "key"),
    [
        ('host = "compatible"\nbase_url = "http://127.0.0.1:9/v1"\n', "`host` = 'compatible'"),
        (
            'host = "azure"\nbase_url = "https://r.openai.azure.com"\ndeployment = "d"\napi_version = "2024-06-01"\n',
            "`api_version` = '2024-06-01'",
        ),
    ],
)
def test_structured_scores_on_a_host_without_them_fail_before_any_call(tmp_path, monkeypatch, teacher, key):
    monkeypatch.setenv("K_a", "x")
    monkeypatch.setenv("K_b", "y")
    cfg = load_config(_config(tmp_path, teacher, "[review]\nstructured = true\n"))
    with pytest.raises(ConfigError) as exc:
        check_teachers(cfg)
    message = str(exc.value)
    assert "teacher 'az'" in message and key in message and "$.teachers[0]" in message and "\n" not in message
    # Without structured the same teacher is fine.
    check_teachers(load_config(_config(tmp_path, teacher)))


@pytest.mark.anyio
async def test_a_run_with_an_azure_teacher_on_the_emulator(tmp_path):
    questions = load_split("svamp", "demo", "train")[:3]
    mistakes = write_demo_mistakes(tmp_path / "svamp.json", questions)
    path = tmp_path / "run.toml"
    path.write_text(
        f'[run]\nname = "azure"\nout_dir = "run"\n[[datasets]]\ntask = "svamp"\nmistakes = "{mistakes}"\n'
        "[emulator]\nlatency_ms = 0\n"
        '[[teachers]]\nname = "az"\nprovider = "openai"\nmodel = "gpt-4o"\nbase_url = "emulator"\nhost = "azure"\n'
        'deployment = "team-gpt4o"\napi_version = "2024-10-21"\nprice_in_per_mtok = 1\nprice_out_per_mtok = 1\n'
        '[[teachers]]\nname = "gem"\nprovider = "gemini"\nmodel = "g"\nbase_url = "emulator"\n'
        "price_in_per_mtok = 1\nprice_out_per_mtok = 1\n"
        "[review]\nstructured = true\n"
    )
    ctx = RunContext(path, load_config(path), progress=False)
    result = await run_job(ctx, "teach")
    assert not result.problems
    samples = [msgspec.json.decode(line) for line in (ctx.out_dir / "dataset.jsonl").read_bytes().splitlines()]
    assert len(samples) == 3
    # The Azure teacher wrote rationales and feedback and reviewed, through its deployment URL.
    for s in samples:
        assert not s["missing"]
        assert {r["teacher"] for r in s["rationales"] if r["text"]} == {"az", "gem"}
        assert all(score is not None for r in s["rationales"] for score in r["scores"].values())


@pytest.mark.anyio
async def test_the_official_azure_sdk_reaches_the_emulated_deployment(monkeypatch):
    openai = pytest.importorskip("openai")
    for name in ("AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", "OPENAI_API_VERSION", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    async with run_emulator(EmulatorSpec()) as emu:
        client = openai.AsyncAzureOpenAI(api_key=KEY, azure_endpoint=emu.url, api_version="2024-10-21")
        async with client:
            answer = await client.chat.completions.create(
                model="team-gpt4o", messages=[{"role": "user", "content": "What is 2 + 3?"}], max_tokens=16
            )
        stats = emu.stats()
    assert answer.choices[0].message.content and stats.unauthorized == 0
    assert stats.models["team-gpt4o"].completed == 1
