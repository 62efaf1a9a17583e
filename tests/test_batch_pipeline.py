"""Batch mode end to end: run.py against the emulator's Batch APIs, one provider's teacher in batch mode beside two
sync teachers.

The dataset equals three sync teachers' on the same scripted answers and the batch teacher costs half. Killed
(SIGKILL) while a batch is being submitted, polled or downloaded and run again, the run reaches the same dataset and
the emulator bills every batch request exactly once.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import sys
import time
from pathlib import Path

import anyio
import pytest

from emulator import BatchBehaviour, EmulatorSpec, Latency
from emulator.fair_script import FairScript
from tasks import load_split
from tests.conftest import TEACHERS, authors_file, write_config

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[1]
# The teacher of each provider in tests.conftest.TEACHERS.
BATCH_TEACHER = {provider: (name, model) for name, provider, model in TEACHERS}
PROVIDERS = ["openai", "anthropic", "gemini"]


def _teach(cfg: Path) -> list[str]:
    return [sys.executable, "run.py", "--config", str(cfg), "--stage", "teach", "--no-progress"]


def _batch_config(tmp: Path, emu, mistakes: Path, provider: str, extra: str = "") -> Path:
    """The three conftest teachers on `emu`, `provider`'s in batch mode with short windows and polls (and `extra`)."""
    cfg = write_config(tmp, emu, {"svamp": mistakes})
    name, _ = BATCH_TEACHER[provider]
    batch_keys = 'mode = "batch"\nbatch_window_s = 0.2\nbatch_poll_s = 0.05\n' + extra
    cfg.write_text(cfg.read_text().replace(f'name = "{name}"\n', f'name = "{name}"\n{batch_keys}', 1))
    return cfg


def _query(out_dir: Path, sql: str, *args: object) -> list[tuple]:
    db = out_dir / "store.sqlite"
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # killed before the schema was committed
        return []
    finally:
        conn.close()


def _usd(out_dir: Path, teacher: str) -> float:
    return _query(out_dir, "SELECT sum(usd) FROM calls WHERE teacher = ?", teacher)[0][0]


async def _reference(tmp: Path, emulator, n: int, delay_s: float, **behaviour: float):
    """An emulator whose batches take `delay_s` (and `behaviour`), `n` demo mistakes, and the run of three sync
    teachers on them that every batch run must agree with: (emulator, mistakes file, the reference's out_dir)."""
    qs = load_split("svamp", "demo", "train")[:n]
    batches = BatchBehaviour(delay_s=delay_s, **behaviour)  # type: ignore[arg-type]
    spec = EmulatorSpec(latency=Latency(median_ms=20, sigma=0.3), batch=batches)
    emu = await emulator(spec, FairScript(qs))
    mistakes = authors_file(tmp / "m.json", "svamp", qs)
    (tmp / "ref").mkdir()
    ref = await anyio.run_process(_teach(write_config(tmp / "ref", emu, {"svamp": mistakes})), cwd=ROOT, check=False)
    assert ref.returncode == 0, ref.stderr.decode()
    emu.reset_stats()
    return emu, mistakes, tmp / "ref" / "run"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_batch_teacher_gives_the_same_dataset_at_half_the_price(tmp_path, emulator, monkeypatch, provider):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    emu, mistakes, reference = await _reference(tmp_path, emulator, 6, delay_s=0.3)

    (tmp_path / "batch").mkdir()
    run = await anyio.run_process(
        _teach(_batch_config(tmp_path / "batch", emu, mistakes, provider)), cwd=ROOT, check=False
    )
    assert run.returncode == 0, run.stderr.decode()
    out_dir = tmp_path / "batch" / "run"
    assert (out_dir / "dataset.jsonl").read_bytes() == (reference / "dataset.jsonl").read_bytes()

    name, model = BATCH_TEACHER[provider]
    modes = dict(_query(out_dir, "SELECT mode, count(*) FROM calls WHERE teacher = ? GROUP BY mode", name))
    stats = emu.stats().models[model]
    assert modes == {"batch": stats.batch_billed} and stats.batch_billed > 0 and stats.received == 0
    assert _usd(out_dir, name) == pytest.approx(_usd(reference, name) / 2)
    # The sync teachers paid what they paid before.
    for other, _, _ in TEACHERS:
        if other != name:
            assert _usd(out_dir, other) == pytest.approx(_usd(reference, other))


async def test_failed_and_expired_requests_go_into_later_batches_or_through_sync(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    # A fifth of the requests fail (server errors), and a batch expires halfway through its requests: what did not
    # finish goes into the next batch, and a request alone in its batch (last to finish) never makes it, so after
    # three batches it goes through the sync lane.
    emu, mistakes, reference = await _reference(tmp_path, emulator, 6, delay_s=0.6, error_share=0.2, expire_after_s=0.3)
    (tmp_path / "batch").mkdir()
    extra = 'max_attempts = 3\nfallback = "sync"\n'
    cfg = _batch_config(tmp_path / "batch", emu, mistakes, "openai", extra)
    run = await anyio.run_process(_teach(cfg), cwd=ROOT, check=False)
    assert run.returncode == 0, run.stderr.decode()
    out_dir = tmp_path / "batch" / "run"
    assert (out_dir / "dataset.jsonl").read_bytes() == (reference / "dataset.jsonl").read_bytes()

    name, model = BATCH_TEACHER["openai"]
    stats = emu.stats().models[model]
    assert stats.batch_errored > 0 and stats.batch_expired > 0
    modes = dict(_query(out_dir, "SELECT mode, count(*) FROM calls WHERE teacher = ? GROUP BY mode", name))
    assert modes["batch"] == stats.batch_billed and modes["sync"] == stats.received > 0
    # Each request paid once, whichever way it went.
    assert set(stats.billed_keys.values()) == {1}
    closed = _query(out_dir, "SELECT CAST(body AS TEXT) FROM batches WHERE kind = 'closed'")
    assert any('"state":"expired"' in body for (body,) in closed)
    assert "teacher 'gpt': batch " in run.stderr.decode() and "expired" in run.stderr.decode()


# Where a kill lands, each seen in the store as written by the run being killed (after `?`, its start): a batch
# planned (being submitted), a batch polled and not closed (polling), a batch's results partly committed (download).
_OPEN = "(SELECT local_id FROM batches WHERE kind = 'closed')"
PHASES = {
    "submission": "SELECT 1 FROM batches WHERE kind = 'planned' AND at > ?",
    "polling": f"SELECT 1 FROM batches WHERE kind = 'polled' AND at > ? AND local_id NOT IN {_OPEN}",
    "download": f"SELECT 1 FROM calls WHERE mode = 'batch' AND finished_at > ? AND batch NOT IN {_OPEN}",
}


async def _run_until(cfg: Path, out_dir: Path, phase: str) -> int | None:
    """Run the teach stage and SIGKILL it once `phase` shows in its store; its exit code if it ended first."""
    started = time.time()
    async with await anyio.open_process(_teach(cfg), cwd=ROOT, stdout=None, stderr=None) as proc:
        with anyio.fail_after(60):
            while proc.returncode is None and not _query(out_dir, PHASES[phase], started):
                # The store is another process's file: nothing to wait on but time.
                with anyio.move_on_after(0.01):
                    await proc.wait()
        if proc.returncode is not None:
            return proc.returncode
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        return None


@pytest.mark.slow
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_sigkill_in_any_batch_phase_then_rerun_bills_each_request_once(tmp_path, emulator, monkeypatch, provider):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    emu, mistakes, reference = await _reference(tmp_path, emulator, 10, delay_s=1.0)

    (tmp_path / "killed").mkdir()
    cfg = _batch_config(tmp_path / "killed", emu, mistakes, provider)
    out_dir = tmp_path / "killed" / "run"
    rng = random.Random(13)
    kills = []
    for phase in ["submission", "polling", "download", *rng.choices(list(PHASES), k=3)]:
        code = await _run_until(cfg, out_dir, phase)
        if code is not None:
            assert code == 0
            break
        kills.append(phase)
    final = await anyio.run_process(_teach(cfg), cwd=ROOT, check=False)
    assert final.returncode == 0, final.stderr.decode()

    assert len(kills) >= 3, f"killed only in {kills}: the run finished first; make its batches slower"
    assert (out_dir / "dataset.jsonl").read_bytes() == (reference / "dataset.jsonl").read_bytes()
    name, model = BATCH_TEACHER[provider]
    stats = emu.stats().models[model]
    # Every request of the batch teacher billed once by the provider, and recorded once by us.
    assert stats.batch_billed > 0 and set(stats.batch_ids.values()) == {1} and set(stats.billed_keys.values()) == {1}
    completed = _query(
        out_dir, "SELECT key, count(*) FROM calls WHERE teacher = ? AND status = 'completed' GROUP BY key", name
    )
    assert len(completed) == stats.batch_billed and {n for _, n in completed} == {1}
    assert _usd(out_dir, name) == pytest.approx(_usd(reference, name) / 2)
    # Nothing left open.
    open_batches = _query(
        out_dir,
        "SELECT DISTINCT local_id FROM batches "
        "WHERE local_id NOT IN (SELECT local_id FROM batches WHERE kind = 'closed')",
    )
    assert open_batches == []


class _Clock:
    """The emulator's clock, moved by hand: a batch finishes only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_teaching_that_ends_with_a_batch_still_open_says_so_and_exits_3(tmp_path, monkeypatch):
    from emulator import run_emulator

    monkeypatch.setenv("COMMITTEE_TEST_KEY", "k")
    qs = load_split("svamp", "demo", "train")[:2]
    clock = _Clock()
    spec = EmulatorSpec(latency=Latency(median_ms=5, sigma=0.1), batch=BatchBehaviour(delay_s=60))
    async with run_emulator(spec, FairScript(qs), clock=clock) as emu:
        mistakes = authors_file(tmp_path / "m.json", "svamp", qs)
        cfg = _batch_config(tmp_path, emu, mistakes, "openai")
        out_dir = tmp_path / "run"
        # Killed while its batch runs (the emulator's clock stands still).
        assert await _run_until(cfg, out_dir, "polling") is None
        # The next run has no mistakes to teach: nobody waits for the open batch, and teaching ends at once.
        empty = authors_file(tmp_path / "none.json", "svamp", [])
        cfg.write_text(cfg.read_text().replace(str(mistakes), str(empty)))
        run = await anyio.run_process(_teach(cfg), cwd=ROOT, check=False)
        stderr = run.stderr.decode()
        assert run.returncode == 3, stderr
        (line,) = [line for line in stderr.splitlines() if "still open at the provider" in line]
        assert "teacher 'gpt': 1 batch still open at the provider (batch_" in line
        assert "rerun the same command later" in line

        # Once the batch is done, a rerun collects it though no sample waits for it: every answer recorded once.
        clock.now += 120
        run = await anyio.run_process(_teach(cfg), cwd=ROOT, check=False)
        assert run.returncode == 0, run.stderr.decode()
        billed = emu.stats().models["model-gpt"].batch_billed
        rows = _query(out_dir, "SELECT count(*) FROM calls WHERE teacher = 'gpt' AND mode = 'batch'")
        assert billed > 0 and rows == [(billed,)]
        assert _query(out_dir, "SELECT count(*) FROM batches WHERE kind = 'closed'") == [(1,)]
