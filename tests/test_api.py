"""The Python API as a notebook uses it: a Config built in code, runs called from inside a running event loop
(a Jupyter cell) and awaited in one, typed results and records, an interrupt that stops the run."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path

import anyio
import msgspec
import pytest

import committee
from committee import Config, DatasetSection, EmulatorSection, RunSection, StudentSection, TeacherSection
from core.config import load_config
from stages.job import JobResult
from stages.lock import hold_run_dir
from tasks import load_split
from tests.conftest import TEACHERS, authors_file, write_config
from tests.test_trainer import config as trainer_config
from trainer.launch import on_stop_signals
from trainer.loss import fair_loss

N_MISTAKES = 6


def _teachers(base_url: str = "emulator") -> list[TeacherSection]:
    prices = dict(rpm=60000, price_in_per_mtok=1.0, price_out_per_mtok=2.0)
    return [TeacherSection(name=n, provider=p, model=m, base_url=base_url, **prices) for n, p, m in TEACHERS]


def _notebook_config(folder: Path) -> Config:
    """What a notebook cell builds: demo SVAMP questions as the authors' mistake file, three emulated teachers,
    every path relative (to the working directory, the notebook's folder)."""
    questions = load_split("svamp", "demo", "train", limit=N_MISTAKES)
    authors_file(folder / "svamp_mistakes.json", "svamp", questions)
    return Config(
        run=RunSection(name="nb", out_dir="runs/nb"),
        datasets=[DatasetSection(task="svamp", mistakes="svamp_mistakes.json")],
        teachers=_teachers(),
        emulator=EmulatorSection(latency_ms=5, latency_sigma=0.1),
    )


def test_the_blocking_api_runs_from_inside_a_running_event_loop_like_a_notebook_cell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _notebook_config(tmp_path)

    async def cell() -> committee.RunResult:
        # Jupyter runs each cell in its event loop: a run may not start a loop of its own on this thread.
        return committee.run(cfg, stage="teach")

    result = asyncio.run(cell())

    assert (result.stage, result.exit_code, result.problems) == ("teach", 0, [])
    out = tmp_path / "runs" / "nb"
    assert result.paths.out_dir == out and result.paths.dataset == out / "dataset.jsonl"
    assert result.paths.report == out / "report.md" and result.paths.models == {} and result.evals == []
    # The config built in code, checked and resolved, is what trainer processes would read.
    assert result.paths.config == out / "config.json"
    assert load_config(result.paths.config) == committee.config_from(cfg)
    assert cfg.run.out_dir == "runs/nb", "the caller's Config is left as it was"

    assert isinstance(result.cost, committee.CostReport)
    assert result.cost == msgspec.json.decode((out / "cost_report.json").read_bytes(), type=committee.CostReport)
    [svamp] = result.cost.datasets
    assert svamp.task == "svamp" and svamp.samples == N_MISTAKES and result.cost.total_usd
    assert {row.stage for row in svamp.rows} == {"rationale", "feedback", "review"}

    samples = list(committee.records(result))
    assert all(isinstance(s, committee.DecidedSample) for s in samples)
    assert sorted(s.id for s in samples) == sorted(s.id for s in committee.records(out))
    assert len(samples) == N_MISTAKES and {len(s.rationales) for s in samples} == {3}
    train = list(committee.train_records(result))
    assert len(train) == sum(s.included for s in samples) == svamp.included
    assert {r.id for r in train} <= {s.id for s in samples}


@pytest.mark.anyio
async def test_the_async_api_runs_in_the_callers_loop_and_a_rerun_buys_nothing(tmp_path, monkeypatch, emulator):
    monkeypatch.setenv("COMMITTEE_TEST_KEY", "sk-test-secret")
    questions = load_split("svamp", "demo", "train", limit=N_MISTAKES)
    # The emulator serves from this test's loop: only a run in this same loop can reach it while the test awaits.
    emu = await emulator()
    path = write_config(tmp_path, emu, {"svamp": authors_file(tmp_path / "svamp.json", "svamp", questions)})
    cfg = committee.load(path)

    first = await committee.arun(cfg, stage="teach", config_path=path)
    answered = emu.stats().total.completed
    again = await committee.arun(cfg, stage="teach", config_path=path)

    assert first.exit_code == again.exit_code == 0 and answered >= N_MISTAKES * 6
    assert emu.stats().total.completed == answered, "the rerun sent calls the store already held"
    assert first.paths.config == path.resolve() and not (first.paths.out_dir / "config.json").exists()
    assert again.cost is not None and first.cost is not None
    assert again.cost.total_usd == first.cost.total_usd
    assert [s.id for s in committee.records(again)] == [s.id for s in committee.records(first)]


def test_eval_results_come_back_typed_from_a_plain_call(tmp_path, tiny_model_dir):
    cfg = Config(
        run=RunSection(name="ev", out_dir=str(tmp_path / "run")),
        datasets=[DatasetSection(task="svamp", source="demo", test_limit=2)],
        student=StudentSection(model=str(tiny_model_dir), backend="hf", batch_size=2, max_new_tokens=4),
    )

    result = committee.run(cfg, stage="eval")

    assert result.exit_code == 0 and result.cost is None and result.paths.eval == tmp_path / "run" / "eval.json"
    [entry] = result.evals
    assert (entry.task, entry.checkpoint, entry.n) == ("svamp", "base", 2)
    assert 0 <= entry.correct <= 2 and entry.ci_low <= entry.accuracy <= entry.ci_high


def test_a_notebook_interrupt_stops_the_run_and_frees_its_directory(tmp_path, monkeypatch):
    cancelled = threading.Event()

    async def run_job_until_stopped(ctx, stage):
        # The kernel's interrupt, a real SIGINT (Linux hands it to the main thread, blocked in the call).
        os.kill(os.getpid(), signal.SIGINT)
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    monkeypatch.setattr("committee.job.run_job", run_job_until_stopped)
    cfg = Config(run=RunSection(name="i", out_dir=str(tmp_path / "run")), datasets=[DatasetSection(task="svamp")])

    async def cell() -> None:
        # ipykernel gives a running cell Python's own SIGINT handler, which raises KeyboardInterrupt.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            committee.run(cfg, stage="report")
        finally:
            signal.signal(signal.SIGINT, previous)

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(cell())

    assert cancelled.is_set()
    assert not [t for t in threading.enumerate() if t.name == "committee-run"]
    with hold_run_dir(tmp_path / "run"):  # the run let go of its directory
        pass


def test_a_notebook_interrupt_reaches_training_that_blocks_the_runs_loop(tmp_path, monkeypatch):
    heard: list[int] = []

    async def run_job_training(ctx, stage):
        # In-process training blocks the run's event loop: a cancellation waits for it, its stop handler does not.
        stopped = threading.Event()

        def handler(signum: int, frame: object) -> None:
            heard.append(signum)
            stopped.set()

        with on_stop_signals(handler):
            os.kill(os.getpid(), signal.SIGINT)
            stopped.wait(timeout=60)
        return JobResult()

    monkeypatch.setattr("committee.job.run_job", run_job_training)
    cfg = Config(run=RunSection(name="t", out_dir=str(tmp_path / "run")), datasets=[DatasetSection(task="svamp")])

    async def cell() -> None:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            committee.run(cfg, stage="report")
        finally:
            signal.signal(signal.SIGINT, previous)

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(cell())
    assert heard == [signal.SIGINT]


def test_a_notebook_interrupt_stops_real_training_at_a_step_boundary(tmp_path, tiny_model_dir, monkeypatch):
    from trainer import recipe

    cfg = trainer_config(tmp_path, tiny_model_dir, max_steps=40, save_every_steps=100)
    calls = 0

    def loss_then_interrupt(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 3:  # in the second step (two micro-batches a step)
            os.kill(os.getpid(), signal.SIGINT)
        return fair_loss(*args, **kwargs)

    monkeypatch.setattr(recipe, "fair_loss", loss_then_interrupt)

    async def cell() -> None:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            committee.run(cfg, stage="train")
        finally:
            signal.signal(signal.SIGINT, previous)

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(cell())
    steps = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    # Stopped where Ctrl-C stops a terminal's run: at the end of the step it came in, with a checkpoint to resume.
    assert len(steps) == 2 and [p.name for p in (tmp_path / "run" / "checkpoints").glob("step*")] == ["step00000002"]
    assert (tmp_path / "run" / "report.md").is_file()


def test_a_config_built_in_code_is_checked_as_a_file_is(tmp_path):
    one_teacher = Config(
        run=RunSection(name="x", out_dir="run"), datasets=[DatasetSection(task="svamp")], teachers=_teachers()[:1]
    )
    with pytest.raises(committee.ConfigError, match=r"^Config built in Python: \$\.teachers: peer review needs"):
        committee.config_from(one_teacher)

    wrong_type = msgspec.structs.replace(one_teacher, teachers=_teachers())
    wrong_type.teachers[1].rpm = "fast"  # type: ignore[assignment]  # what a typo in a notebook does
    typo = r"Expected `float \| null`, got `str` - at `\$\.teachers\[1\]\.rpm`"
    with pytest.raises(committee.ConfigError, match=typo):
        committee.config_from(wrong_type)

    paths = Config(
        run=RunSection(name="x", out_dir=Path("run")),  # type: ignore[arg-type]  # a Path where str is declared
        datasets=[DatasetSection(task="svamp", mistakes="m.json", source="hf:ChilleD/SVAMP")],
    )
    with pytest.raises(committee.ConfigError, match=r"^stage 'teech' is not a stage; use one of all, exam, teach"):
        committee.run(paths, stage="teech", base_dir=tmp_path)  # type: ignore[arg-type]
    checked = committee.config_from(paths, base_dir=tmp_path)
    assert checked.run.out_dir == str(tmp_path / "run") and checked.datasets[0].mistakes == str(tmp_path / "m.json")
    assert checked.datasets[0].source == "hf:ChilleD/SVAMP"


def test_records_of_a_directory_without_a_dataset_say_what_to_run(tmp_path):
    with pytest.raises(committee.DataError, match=r"dataset\.jsonl: no such file; run the teach stage"):
        committee.records(tmp_path)


def test_a_json_config_is_read_as_toml_is_with_its_errors_named(tmp_path):
    cfg = Config(run=RunSection(name="j", out_dir="run"), datasets=[DatasetSection(task="svamp")])
    path = tmp_path / "run.json"
    path.write_bytes(msgspec.json.encode(cfg))
    assert committee.load(path) == committee.config_from(cfg, base_dir=tmp_path)

    path.write_text('{"run": {"name": "j", "out_dir": "run", "sead": 1}, "datasets": [{"task": "svamp"}]}')
    with pytest.raises(committee.ConfigError, match=r"run\.json: Object contains unknown field `sead` - at `\$\.run`"):
        committee.load(path)
    path.write_text('{"run": ')
    with pytest.raises(committee.ConfigError, match=r"run\.json: not valid JSON"):
        committee.load(path)


def test_every_config_section_is_part_of_the_api() -> None:
    # A notebook defining its own task builds a FieldsSection too: every section comes from `committee`.
    import core.config

    sections = {
        name
        for name, value in vars(core.config).items()
        if name.endswith("Section") and not name.startswith("_") and isinstance(value, type)
    }
    assert "FieldsSection" in sections and sections <= set(committee.__all__)
