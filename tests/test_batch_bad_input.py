"""Batch mode's bad input end to end (run.py): a host with no Batch API, unreadable results, a failed batch.

Each ends with one line naming the teacher, the batch and the cause, and nothing already paid is lost.
"""

from __future__ import annotations

import re
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import anyio
import pytest
from aiohttp import web

from emulator import BatchBehaviour, EmulatorSpec, Latency
from emulator.fair_script import FairScript
from tasks import load_split
from tests.conftest import authors_file, write_config

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[1]


@asynccontextmanager
async def _proxy(upstream: str, *, batches: bool, garble: bytes | None = None) -> AsyncIterator[str]:
    """An OpenAI-wire server in front of `upstream` (its `/v1` URL): chat completions passed through; the Files
    and Batch endpoints too when `batches`, else 404 as an OpenAI-compatible server without them (vLLM's) answers.
    `garble`: the first line of the first output file downloaded becomes these bytes."""
    garbled: list[str] = []

    async def passed(request: web.Request) -> web.Response:
        if not batches and request.path != "/v1/chat/completions":
            raise web.HTTPNotFound()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        url = upstream.removesuffix("/v1") + request.path_qs
        async with aiohttp.ClientSession() as session:
            async with session.request(request.method, url, data=await request.read(), headers=headers) as answer:
                body = await answer.read()
        if garble is not None and request.path.endswith("/content") and not garbled and b'"status_code"' in body:
            garbled.append(request.path)
            body = b"\n".join([garble, *body.split(b"\n")[1:]])
        return web.Response(status=answer.status, body=body, content_type=answer.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", passed)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


def _teach(cfg: Path) -> list[str]:
    return [sys.executable, "run.py", "--config", str(cfg), "--stage", "teach", "--no-progress"]


def _in_batch_mode(cfg: Path, name: str) -> Path:
    keys = 'mode = "batch"\nbatch_window_s = 0.05\nbatch_poll_s = 0.05\n'
    cfg.write_text(cfg.read_text().replace(f'name = "{name}"\n', f'name = "{name}"\n{keys}', 1))
    return cfg


async def test_a_host_without_a_batch_api_ends_in_one_line_naming_teacher_and_batch(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = load_split("svamp", "demo", "train")[:2]
    emu = await emulator(EmulatorSpec(latency=Latency(median_ms=5, sigma=0.1)), FairScript(qs))
    mistakes = authors_file(tmp_path / "m.json", "svamp", qs)
    async with _proxy(emu.base_url("openai"), batches=False) as url:
        cfg = _in_batch_mode(write_config(tmp_path, emu, {"svamp": mistakes}, urls={"gpt": url}), "gpt")
        for _ in range(2):
            # Twice: the first run leaves nothing that makes the second one fail otherwise.
            with anyio.fail_after(120):
                run = await anyio.run_process(_teach(cfg), cwd=ROOT, check=False)
            stderr = run.stderr.decode()
            assert run.returncode == 3, stderr
            # The warning as it happens and the run's summary say the same line.
            said = {line[line.index("teacher 'gpt'") :] for line in stderr.splitlines() if "set mode = 'sync'" in line}
            assert len(said) == 1, stderr
            (line,) = said
            assert line.startswith("teacher 'gpt': batch ") and "not created" in line and "HTTP 404" in line
            assert line.count("teacher 'gpt'") == 1, line
    # The batch teacher's requests never reached a model (nor the emulator behind the proxy).
    assert "model-gpt" not in emu.stats().models


async def test_batches_the_provider_fails_are_named_in_one_line_and_nothing_paid_is_lost(
    tmp_path, emulator, monkeypatch
):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = load_split("svamp", "demo", "train")[:3]
    # One batch in progress at a time: OpenAI fails the others (its enqueued limit, `token_limit_exceeded`).
    spec = EmulatorSpec(latency=Latency(median_ms=5, sigma=0.1), batch=BatchBehaviour(delay_s=0.2, max_in_flight=1))
    emu = await emulator(spec, FairScript(qs))
    mistakes = authors_file(tmp_path / "m.json", "svamp", qs)
    cfg = _in_batch_mode(write_config(tmp_path, emu, {"svamp": mistakes}), "gpt")
    cfg.write_text(cfg.read_text().replace('mode = "batch"\n', 'mode = "batch"\nbatch_max_requests = 1\n', 1))
    with anyio.fail_after(120):
        run = await anyio.run_process(_teach(cfg), cwd=ROOT, check=False)
    stderr = run.stderr.decode()
    # Each failed batch named in one line; its requests went again, without using up their attempts.
    assert run.returncode == 0, stderr
    failed = [line for line in stderr.splitlines() if "token_limit_exceeded" in line]
    assert failed and all(
        re.search(r"WARNING engine\.batch_lane: teacher 'gpt': batch batch_emu\d+: ", x) for x in failed
    )
    # Failed batches bill nothing; every answered request is billed once and recorded once.
    stats = emu.stats().models["model-gpt"]
    assert set(stats.billed_keys.values()) == {1}
    with sqlite3.connect(tmp_path / "run" / "store.sqlite") as conn:
        (rows,) = conn.execute("SELECT count(*) FROM calls WHERE teacher = 'gpt' AND status = 'completed'").fetchone()
    assert rows == stats.batch_billed > 0


async def test_an_unreadable_output_line_is_named_and_the_rest_of_the_batch_is_kept(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = load_split("svamp", "demo", "train")[:2]
    spec = EmulatorSpec(latency=Latency(median_ms=5, sigma=0.1), batch=BatchBehaviour(delay_s=0.1))
    emu = await emulator(spec, FairScript(qs))
    mistakes = authors_file(tmp_path / "m.json", "svamp", qs)
    async with _proxy(emu.base_url("openai"), batches=True, garble=b'{"custom_id": "x", "resp') as url:
        cfg = _in_batch_mode(write_config(tmp_path, emu, {"svamp": mistakes}, urls={"gpt": url}), "gpt")
        with anyio.fail_after(120):
            run = await anyio.run_process(_teach(cfg), cwd=ROOT, check=False)
    stderr = run.stderr.decode()
    assert run.returncode == 3, stderr
    said = {x[x.index("teacher 'gpt'") :] for x in stderr.splitlines() if "results unreadable" in x and "WARN" in x}
    assert len(said) == 1, stderr
    (line,) = said
    assert re.match(r"teacher 'gpt': batch batch_emu\d+: results unreadable: .*line 1 of the output file", line)
    # The garbled answer was paid: its request failed, booked as possibly billed, and was not sent again; every
    # other answer of that batch was kept.
    stats = emu.stats().models["model-gpt"]
    assert set(stats.billed_keys.values()) == {1}
    with sqlite3.connect(tmp_path / "run" / "store.sqlite") as conn:
        rows = dict(conn.execute("SELECT status, count(*) FROM calls WHERE teacher = 'gpt' GROUP BY status"))
        (possibly,) = conn.execute("SELECT sum(possibly_usd) FROM calls WHERE teacher = 'gpt'").fetchone()
    assert rows == {"completed": stats.batch_billed - 1, "failed": 1} and possibly > 0
