"""`run.py --status`: where a run stands, from its store alone, beside the run that holds the directory."""

from __future__ import annotations

import os
import sys

import msgspec
import pytest

from core.config import load_config
from stages.lock import hold_run_dir
from stages.status import read_status, run_holder
from store.calls import Store, open_db
from tests.test_batch_costs import _batch_store
from tests.test_ledger import SAMPLES

pytestmark = pytest.mark.anyio


def _config(tmp_path):
    path = tmp_path / "run.toml"
    teachers = "".join(
        f'[[teachers]]\nname = "{name}"\nprovider = "openai"\nmodel = "{model}"\napi_key_env = "NO_SUCH_KEY"\n'
        f'mode = "{mode}"\n\n'
        for name, mode, model in (("a", "batch", "gpt-4o-mini"), ("b", "sync", "gpt-4o"))
    )
    path.write_text(
        f'[run]\nname = "t"\nout_dir = "{tmp_path / "run"}"\n\n'
        '[[datasets]]\ntask = "svamp"\n\n[[datasets]]\ntask = "gsm8k"\n\n' + teachers
    )
    return path


async def _run_store(tmp_path):
    (tmp_path / "run").mkdir()
    (await _batch_store(tmp_path / "run")).close()
    async with Store.open(tmp_path / "run" / "store.sqlite") as store:
        for i, s in enumerate(SAMPLES):
            await store.add_sample(s.task, s.id, i, msgspec.json.encode(s))


async def test_status_counts_samples_calls_usd_and_batches(tmp_path):
    await _run_store(tmp_path)
    cfg = load_config(_config(tmp_path))
    status = read_status(cfg, open_db(tmp_path / "run" / "store.sqlite"), tmp_path / "run", now=1e12)
    assert [(d.task, d.decided, d.included) for d in status.datasets] == [("svamp", 3, 2), ("gsm8k", 0, 0)]
    assert [(t.teacher, t.mode, t.calls, t.failed) for t in status.teachers] == [
        ("a", "sync", 1, 0),
        ("a", "batch", 2, 2),
        ("b", "sync", 1, 0),
    ]
    assert status.usd == pytest.approx(0.006) and status.running is None
    assert [(b.local_id, b.provider_id, b.state, b.closed) for b in status.batches] == [
        ("b1", "batch_abc", "completed", True),
        ("b2", "batch_def", "expired", True),
        ("b3", None, "planned", False),
    ]


async def test_status_runs_beside_the_run_holding_the_directory_and_sends_nothing(tmp_path, capsys, monkeypatch):
    import run

    monkeypatch.setenv("COLUMNS", "300")  # rich wraps at 80 columns when it cannot see a terminal

    await _run_store(tmp_path)
    cfg = _config(tmp_path)
    before = (tmp_path / "run" / "store.sqlite").read_bytes()
    with hold_run_dir(tmp_path / "run"):
        assert run_holder(tmp_path / "run") == f"pid {os.getpid()}: " + " ".join(sys.orig_argv)
        # No API key in the environment: nothing is sent, so none is needed.
        assert run.main(["--config", str(cfg), "--status", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"a run is in progress (pid {os.getpid()}" in out
    assert "batch_abc" in out and "expired: 24h window passed" in out and "(not yet created)" in out
    assert "Batches (1 open of 3)" in out and "planned, open" in out
    assert run_holder(tmp_path / "run") is None
    assert (tmp_path / "run" / "store.sqlite").read_bytes() == before


def test_status_before_any_teacher_call_says_so(tmp_path, capsys):
    import run

    assert run.main(["--config", str(_config(tmp_path)), "--status"]) == 0
    assert "no teacher calls recorded yet" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit):
        run.main(["--config", str(_config(tmp_path)), "--status", "--dry-run"])
