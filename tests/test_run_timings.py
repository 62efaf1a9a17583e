"""Where a run's time goes: timings.jsonl, the report's table, the counted backend and the stage board."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path

import pytest
from rich.console import Console

from core.config import StudentSection
from core.tables import to_markdown
from core.timings import RUN_ID_ENV, TIMINGS_FILE, Laps, read_phases, record_phase, start_run, timed
from prompts.student import question_prompt
from reports.run_report import build_run_report, phase_table
from stages.progress import StageBoard
from student import make_backend
from student.backend import Sampling
from student.hf_backend import HFBackend
from student.metered import MeteredBackend


def test_the_report_shows_the_latest_invocation_and_skips_a_torn_line(tmp_path, monkeypatch):
    monkeypatch.setenv(RUN_ID_ENV, "2026-01-01T00:00:00.000000+00:00")
    record_phase(tmp_path, "exam", "answer", 100.0, tokens=5000)
    start_run()  # a resumed run: a later id
    record_phase(tmp_path, "exam", "answer", 40.0, tokens=2000, note="8 of 32 questions generated")
    with timed(tmp_path, "train") as meter:
        meter.note = "4 steps"
    with (tmp_path / TIMINGS_FILE).open("ab") as f:
        f.write(b'{"run_id": "9999", "stage": "ev')  # killed mid-write

    phases = read_phases(tmp_path)
    assert [(p.stage, p.phase, p.wall_s) for p in phases[:1]] == [("exam", "answer", 40.0)]
    assert [p.stage for p in phases] == ["exam", "train"] and phases[1].note == "4 steps"
    markdown = to_markdown(phase_table(phases))
    assert "| exam | answer | 40.0s | 2,000 | 50.0 |" in markdown
    assert [p.stage for p in build_run_report(tmp_path).phases] == ["exam", "train"]


def test_a_block_that_raises_is_not_recorded_and_laps_follow_each_other(tmp_path, monkeypatch):
    monkeypatch.setenv(RUN_ID_ENV, "a")
    with pytest.raises(RuntimeError), timed(tmp_path, "eval"):
        raise RuntimeError("boom")
    laps = Laps(tmp_path, "train")
    laps.lap("setup")
    laps.lap("steps", tokens=10)
    Laps(None, "train").lap("not rank 0")
    assert [(p.stage, p.phase, p.tokens) for p in read_phases(tmp_path)] == [
        ("train", "setup", None),
        ("train", "steps", 10),
    ]


class _Words:
    """A tokenizer that counts words."""

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": list(range(len(text.split())))}


class _Echo:
    model_id = "echo"
    sampling = Sampling()
    batch_size = 2
    tokenizer = _Words()

    async def generate(self, prompts: Sequence[str]) -> AsyncGenerator[tuple[int, str], None]:
        for i, p in enumerate(prompts):
            yield i, f"{p} is answered"

    async def close(self) -> None:
        pass


@pytest.mark.anyio
async def test_the_metered_backend_counts_what_passes():
    backend = MeteredBackend(_Echo())
    assert backend.tokens_per_s() is None
    got = [text async for _, text in backend.generate(["one", "two three"])]
    assert got == ["one is answered", "two three is answered"]
    # Words plus one stop token per completion.
    assert (backend.asked, backend.done, backend.tokens) == (2, 2, 3 + 1 + 4 + 1)
    assert backend.generate_s > 0 and backend.tokens_per_s() is not None


def test_the_board_gives_each_stage_its_eta_from_the_rate_so_far(caplog):
    now = [0.0]
    count: list[tuple[int, int | None]] = [(0, None)]
    board = StageBoard(["exam", "teach"], live=False, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="stages.progress"), board:
        board.start("exam", "answers", lambda: count[0])
        now[0] = 10.0
        assert board.eta_s("exam") is None  # nothing known yet
        count[0] = (5, None)
        assert board.eta_s("exam") is None and board.line("exam") == "exam: 5/? answers, 10.0s, ETA ?"
        count[0] = (5, 20)
        assert board.eta_s("exam") == pytest.approx(30.0)
        assert board.line("exam") == "exam: 5/20 answers, 10.0s, ETA 30.0s"
        assert board.line("teach") == "teach: waiting" and not board.finished("exam")
        count[0], now[0] = (20, 20), 41.0
        board.finish("exam")
        assert board.finished("exam") and board.eta_s("exam") is None
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["exam: started", "exam: done, 20/20 answers, 41.0s"]


def test_on_a_terminal_the_board_draws_a_row_per_stage():
    console = Console(record=True, force_terminal=True, width=120)
    now = [0.0]
    board = StageBoard(["exam", "teach", "train"], console=console, clock=lambda: now[0])
    with board:
        board.start("exam", "answers", lambda: (8, 32))
        now[0] = 60.0
        with board.pause():
            pass
        board.start("teach", "samples", lambda: (3, None))
        console.print(board.render())
    text = console.export_text()
    assert "8/32 answers" in text and "3m00s" in text  # 60 s for 8 of 32: 3 minutes to go
    assert "3/? samples" in text and "waiting" in text


def test_a_stage_never_started_cannot_finish(tmp_path: Path):
    board = StageBoard(["eval"], live=False)
    board.finish("eval")
    assert not board.finished("eval")


@pytest.mark.anyio
async def test_the_hf_backend_reports_progress_within_a_batch(tiny_model_dir: Path) -> None:
    section = StudentSection(model=str(tiny_model_dir), backend="hf", batch_size=2, max_new_tokens=5, greedy=True)
    inner = make_backend(section)
    assert isinstance(inner, HFBackend)
    seen: list[float] = []
    original = inner._generate_batch

    def spy(batch: list[list[int]], position: int) -> list[str]:
        texts = original(batch, position)
        seen.append(inner.partial)  # the last decode step of this batch
        return texts

    inner._generate_batch = spy  # type: ignore[method-assign]
    backend = MeteredBackend(inner)
    prompts = [question_prompt(inner.tokenizer, "chat", "svamp", q) for q in ("1+1?", "2+2?", "3+3?")]
    assert len([i async for i, _ in backend.generate(prompts)]) == 3
    # Each batch ends at (up to) its whole row count; between batches the share goes back to 0.
    assert 0 < seen[0] <= 2.0
    assert inner.partial == 0.0 and backend.answered() == 3.0


def test_bf16_on_a_cpu_without_bf16_instructions_is_warned_about(monkeypatch, caplog):
    import torch

    import student.hf_backend as hf

    monkeypatch.setattr(hf, "cpu_has_fast_half", lambda dtype: False)
    with caplog.at_level(logging.WARNING, logger="student.hf_backend"):
        assert hf.resolve_dtype("bfloat16", "cpu") == torch.bfloat16
        assert hf.resolve_dtype("auto", "cpu") == torch.float32
    assert len(caplog.records) == 1 and 'dtype = "auto"' in caplog.records[0].getMessage()
    monkeypatch.setattr(hf, "cpu_has_fast_half", lambda dtype: True)
    caplog.clear()
    hf.resolve_dtype("bfloat16", "cpu")
    assert not caplog.records


def test_cpu_training_builds_no_deepspeed_op_and_times_its_phases(tmp_path, tiny_model_dir, monkeypatch):
    from tests.test_trainer import config
    from trainer.recipe import train

    extensions = tmp_path / "torch_extensions"
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(extensions))
    monkeypatch.setenv(RUN_ID_ENV, "t")
    cfg = config(tmp_path, tiny_model_dir, max_steps=2)
    assert train(cfg).steps == 2

    # torch AdamW needs no op, and the shm collectives op DeepSpeed would build on CPU is for inference only.
    assert not extensions.exists() or not any(extensions.iterdir())
    phases = {p.phase: p for p in read_phases(cfg.out_dir) if p.stage == "train"}
    assert list(phases) == [
        "process group, tokenizer", "data", "load model", "deepspeed engine", "resume", "steps",
        "save model",
    ]  # fmt: skip
    assert phases["steps"].tokens and phases["steps"].note == "2 optimizer steps"
