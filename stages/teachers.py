"""Bring up a run's teachers: API keys, one HTTP session and one lane per teacher.

Teachers whose `base_url = "emulator"` are served by bench's provider emulator,
started here on a free 127.0.0.1 port with each teacher's limits (the offline demo
and the tests use it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import date

import aiohttp

from accounting.pricing import cost_fn, teacher_prices, warn_if_stale
from adapters import make_client
from adapters.batch import batch_api
from adapters.hosts import structured_output_problem
from core.calls import HostRoute
from core.capabilities import teacher_request
from core.config import Config, ConfigError, TeacherSection, api_key
from core.records import Question
from engine.batch_lane import BatchLane
from engine.budget import Budget
from engine.lane import Lane, lane_limits
from engine.teacher import Teacher
from engine.tokens import estimate_tokens
from store.calls import Store

EMULATOR_KEY = "emulator-key"


def host_route(t: TeacherSection) -> HostRoute | None:
    """Where an openai-wire teacher's requests go beyond its base_url; None for the other wires."""
    if t.provider != "openai":
        return None
    return HostRoute(
        host=t.host or "openai",
        deployment=t.deployment,
        api_version=t.api_version,
        site_url=t.site_url,
        site_title=t.site_title,
    )


def check_structured(cfg: Config) -> None:
    """With `[review] structured`, every teacher's host must offer structured output; ConfigError naming it."""
    if not cfg.review.structured:
        return
    for i, t in enumerate(cfg.teachers):
        route = host_route(t)
        problem = structured_output_problem(route) if route is not None else None
        if problem is None and t.provider == "anthropic" and teacher_request(t, ()).reasoning is not None:
            # Structured scores are a forced tool call, which Anthropic refuses with extended thinking
            # (https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#feature-compatibility).
            problem = (
                'Anthropic refuses a forced tool call with thinking; set its `reasoning = "off"` where the model '
                "allows, or `[review] structured = false`"
            )
        if problem is not None:
            raise ConfigError(f"$.teachers[{i}]: teacher {t.name!r} cannot give structured review scores: {problem}")


def check_teachers(cfg: Config) -> None:
    """Everything about the teachers that can fail before a call is sent: keys, prices under a cap, hosts."""
    if not cfg.teachers:
        raise ConfigError("no [[teachers]] in the config: the teach stage needs at least two")
    warn_if_stale(date.today())
    check_structured(cfg)
    for t in cfg.teachers:
        if t.base_url != "emulator":
            api_key(t)
        if cfg.review.max_usd is not None and teacher_prices(t) is None:
            raise ConfigError(
                f"teacher {t.name!r}: no known price for model {t.model!r}, so the spending cap "
                "(review.max_usd) cannot be enforced; set price_in_per_mtok and price_out_per_mtok"
            )


def _emulator_spec(cfg: Config):
    from emulator import EmulatorSpec, Latency, ModelLimits

    section = cfg.emulator
    assert section is not None
    return EmulatorSpec(
        # An Azure teacher's requests name its deployment, not its model.
        models={
            (t.deployment if t.host == "azure" else t.model) or t.model: ModelLimits(
                rpm=t.rpm,
                tpm=t.tpm,
                header_dialect=t.host if t.host in ("azure", "together") else "openai",
                refund_unused_tokens=t.host != "azure",
            )
            for t in cfg.teachers
            if t.base_url == "emulator"
        },
        latency=Latency(
            median_ms=section.latency_ms, sigma=section.latency_sigma, ms_per_output_token=section.ms_per_output_token
        ),
        answers="echo" if section.answers == "fair" else section.answers,
        seed=section.seed,
    )


@asynccontextmanager
async def open_teachers(
    cfg: Config, store: Store, budget: Budget, questions: Sequence[Question] = ()
) -> AsyncIterator[list[Teacher]]:
    """Start the teachers' clients and lanes (and the emulator if used); close them on exit.

    `questions` lets the emulator's scripted FAIR teachers know the gold answers.
    """
    check_teachers(cfg)
    async with AsyncExitStack() as stack:
        emulator = None
        if any(t.base_url == "emulator" for t in cfg.teachers):
            from emulator import run_emulator
            from emulator.fair_script import FairScript

            section = cfg.emulator
            assert section is not None  # load_config requires [emulator] for an emulator teacher
            answer_fn = (
                FairScript(questions, seed=section.seed, forget_brackets=section.forget_brackets)
                if section.answers == "fair"
                else None
            )
            emulator = await stack.enter_async_context(run_emulator(_emulator_spec(cfg), answer_fn))
        teachers = []
        for section in cfg.teachers:
            teachers.append(await _open_teacher(stack, section, emulator, store, budget))
        yield teachers


async def _open_teacher(stack: AsyncExitStack, t: TeacherSection, emulator, store: Store, budget: Budget) -> Teacher:
    route = host_route(t)
    if t.base_url == "emulator":
        # Azure's URL starts at the resource endpoint, without /v1.
        key, base_url = EMULATOR_KEY, emulator.url if t.host == "azure" else emulator.base_url(t.provider)
    else:
        key, base_url = api_key(t), t.base_url
    client = await stack.enter_async_context(
        make_client(
            t.provider, api_key=key, base_url=base_url, max_connections=t.max_in_flight, name=t.name, route=route
        )
    )
    # A batch teacher has a sync lane too: for the requests that fall back to sync.
    lane = Lane(t.name, client, lane_limits(t))
    batch = None
    if t.mode == "batch":
        # The Batch API's few control calls (create, poll, download) get their own session.
        session = await stack.enter_async_context(aiohttp.ClientSession(trust_env=False))
        api = batch_api(t, session, key, base_url=base_url)
        batch = BatchLane(t, api, store=store, budget=budget, cost_usd=cost_fn(t, "batch"))
    return Teacher(
        t,
        lane,
        store=store,
        budget=budget,
        cost_usd=cost_fn(t, "sync"),
        estimate_tokens=estimate_tokens,
        batch=batch,
    )
