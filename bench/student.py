"""Student inference benchmark: exam and eval with the real SmolLM2-135M on the hf backend.

For each batch size: the exam on `--n` SVAMP training questions and the eval on
`--n` test questions, each from scratch (a fresh answers store), reporting
accuracy, questions per second and generated tokens per second. The model is
loaded once and shared by all batch sizes.

    python -m bench.student --n 100 --batch-sizes 1,8,16 --json bench_student.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import msgspec
from rich.console import Console
from rich.table import Table

from core.config import StudentSection
from prompts.student import resolve_format
from student import make_backend
from student.answers_store import AnswersStore
from student.evaluate import run_eval
from student.exam import run_exam
from student.hf_backend import HFBackend
from student.metered import MeteredBackend
from tasks import load_split

if TYPE_CHECKING:
    pass

SHARED_SVAMP = Path(__file__).resolve().parents[2] / "shared" / "data" / "svamp"


class Row(msgspec.Struct, kw_only=True):
    """One batch size's figures: exam (train split) and eval (test split)."""

    batch_size: int
    exam_n: int
    exam_correct: int
    exam_wall_s: float
    exam_questions_per_s: float
    exam_tokens_per_s: float
    eval_n: int
    eval_correct: int
    eval_accuracy: float
    eval_ci_low: float
    eval_ci_high: float
    eval_wall_s: float
    eval_questions_per_s: float
    eval_tokens_per_s: float


class Report(msgspec.Struct, kw_only=True):
    model: str
    dtype: str
    max_new_tokens: int
    greedy: bool
    n: int
    cpu_count: int
    load_avg_start: tuple[float, float, float]
    load_avg_end: tuple[float, float, float]
    torch_threads: int
    rows: list[Row]


async def bench(args: argparse.Namespace) -> Report:
    section = StudentSection(
        model=args.model, backend="hf", max_new_tokens=args.max_new_tokens, dtype=args.dtype, greedy=args.greedy
    )
    loaded = make_backend(section, seed=args.seed)
    assert isinstance(loaded, HFBackend)
    fmt = resolve_format(section.prompt_format, loaded.tokenizer)
    train = load_split("svamp", args.data, "train", limit=args.n)
    test = load_split("svamp", args.data, "test", limit=args.n)
    load_start = os.getloadavg()
    rows = []
    for batch_size in args.batch_sizes:
        loaded.batch_size = batch_size
        with tempfile.TemporaryDirectory() as tmp, AnswersStore.open(Path(tmp) / "store.sqlite") as store:
            exam_backend = MeteredBackend(loaded)
            exam = await run_exam(train, exam_backend, store, fmt)
            eval_backend = MeteredBackend(loaded)
            result = await run_eval(test, eval_backend, store, fmt, checkpoint="base", model=args.model)
        e, eval_wall_s = result.entry, result.wall_s
        rows.append(
            Row(
                batch_size=batch_size,
                exam_n=exam.n,
                exam_correct=exam.correct,
                exam_wall_s=exam.wall_s,
                exam_questions_per_s=exam.questions_per_s,
                exam_tokens_per_s=(exam_backend.tokens or 0) / exam.wall_s,
                eval_n=e.n,
                eval_correct=e.correct,
                eval_accuracy=e.accuracy,
                eval_ci_low=e.ci_low,
                eval_ci_high=e.ci_high,
                eval_wall_s=eval_wall_s,
                eval_questions_per_s=e.n / eval_wall_s,
                eval_tokens_per_s=(eval_backend.tokens or 0) / eval_wall_s,
            )
        )
        print(
            f"batch {batch_size}: exam {exam.correct}/{exam.n} in {exam.wall_s:.0f}s, "
            f"eval {e.correct}/{e.n} in {eval_wall_s:.0f}s",
            flush=True,
        )
    await loaded.close()
    return Report(
        model=args.model,
        dtype=str(loaded_dtype(section.dtype)),
        max_new_tokens=args.max_new_tokens,
        greedy=args.greedy,
        n=args.n,
        cpu_count=os.cpu_count() or 0,
        load_avg_start=load_start,
        load_avg_end=os.getloadavg(),
        torch_threads=torch_threads(),
        rows=rows,
    )


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def loaded_dtype(setting: str) -> str:
    from student.hf_backend import resolve_dtype

    return str(resolve_dtype(setting, "cpu")).removeprefix("torch.")


def show(report: Report) -> None:
    table = Table(
        title=f"student on hf/CPU: {report.model}, {report.dtype}, max_new_tokens {report.max_new_tokens}, "
        f"{'greedy' if report.greedy else 'sampled'}, n={report.n} "
        f"(load avg {report.load_avg_start[0]:.1f} -> {report.load_avg_end[0]:.1f} on {report.cpu_count} cores, "
        f"{report.torch_threads} torch threads)"
    )
    for column in ("batch", "exam acc", "exam q/s", "exam tok/s", "eval acc [95% CI]", "eval q/s", "eval tok/s"):
        table.add_column(column, justify="right")
    base = report.rows[0] if report.rows else None
    for r in report.rows:
        speedup = f" (x{r.exam_questions_per_s / base.exam_questions_per_s:.1f})" if base and r is not base else ""
        table.add_row(
            str(r.batch_size),
            f"{r.exam_correct}/{r.exam_n}",
            f"{r.exam_questions_per_s:.3f}{speedup}",
            f"{r.exam_tokens_per_s:.0f}",
            f"{r.eval_accuracy:.2f} [{r.eval_ci_low:.2f}, {r.eval_ci_high:.2f}]",
            f"{r.eval_questions_per_s:.3f}",
            f"{r.eval_tokens_per_s:.0f}",
        )
    # Wide enough for one line per row even when piped (rich assumes 80 columns then).
    Console(width=max(Console().width, 130)).print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.student", description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--n", type=int, default=100, help="questions per split (default 100)")
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 16])
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto")
    parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of the paper's sampling")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument(
        "--data",
        default=str(SHARED_SVAMP) if SHARED_SVAMP.is_dir() else "demo",
        help="SVAMP folder, or 'demo' for the 40+40 questions in tasks/demo_data",
    )
    parser.add_argument("--seed", type=int, default=731)
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's); 1 fares better on a crowded machine"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    report = anyio.run(bench, args)
    show(report)
    if args.json:
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n")


if __name__ == "__main__":
    main()
