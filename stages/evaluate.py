"""The eval stage: accuracy on each dataset's test split, before and after training.

`base` is the configured student; each trained model (`out_dir/model`, and
`out_dir/model_dpo` after the DPO stage) is the checkpoint named after its
directory. With `[train] per_dataset`, `out_dir/models/<task>` is checkpoint `model`
of its own task only. Answers are kept in the store, so a rerun only generates what is missing.
"""

from __future__ import annotations

import time
from pathlib import Path

from core.config import GraderName
from core.timings import record_phase
from prompts.sets import prompt_set
from prompts.student import resolve_format
from stages.context import RunContext
from stages.exam import load_student, open_answers
from stages.progress import StageBoard
from stages.sources import test_questions
from student.evaluate import EvalResult, run_eval, write_eval_json
from student.metered import MeteredBackend
from student.models import is_adapter_dir

TRAINED_CHECKPOINTS = ("model", "model_dpo")


def trained_model_dirs(ctx: RunContext) -> list[Path]:
    """The trained models in the run directory (SFT, then DPO), full weights or LoRA adapters."""
    dirs = [ctx.out_dir / name for name in TRAINED_CHECKPOINTS]
    return [d for d in dirs if (d / "config.json").is_file() or is_adapter_dir(d)]


def per_dataset_model_dirs(ctx: RunContext) -> dict[str, Path]:
    """Each benchmark's own trained student (`[train] per_dataset`), by task."""
    dirs = {d.task: ctx.out_dir / "models" / d.task for d in ctx.cfg.datasets}
    return {task: d for task, d in dirs.items() if (d / "config.json").is_file() or is_adapter_dir(d)}


async def run_eval_stage(ctx: RunContext, board: StageBoard | None = None) -> list[EvalResult]:
    """Evaluate the base student and the trained one(s) (when there are) on every dataset."""
    questions = {d.task: test_questions(d) for d in ctx.cfg.datasets}
    tasks = list(questions)
    # (checkpoint name, model directory or None for the base student, the tasks it answers)
    checkpoints: list[tuple[str, Path | None, list[str]]] = [("base", None, tasks)]
    checkpoints += [(path.name, path, tasks) for path in trained_model_dirs(ctx)]
    checkpoints += [("model", path, [task]) for task, path in per_dataset_model_dirs(ctx).items()]
    graders: dict[str, GraderName] = {d.task: d.grader for d in ctx.cfg.datasets}
    results: list[EvalResult] = []
    total = sum(len(questions[task]) for _, _, its_tasks in checkpoints for task in its_tasks)
    answered = [0]  # answers of finished checkpoints, stored ones included
    current: list[MeteredBackend] = []
    if board is not None:
        board.start("eval", "answers", lambda: (answered[0] + sum(b.answered() for b in current), total))
    with open_answers(ctx) as answers:
        for checkpoint, path, its_tasks in checkpoints:
            backend = load_student(ctx, path, stage="eval", phase=f"load {checkpoint}")
            current[:] = [backend]
            start = time.perf_counter()
            try:
                fmt = resolve_format(ctx.cfg.student.prompt_format, backend.tokenizer)
                for task in its_tasks:
                    qs = questions[task]
                    results.append(
                        await run_eval(
                            qs,
                            backend,
                            answers,
                            fmt,
                            checkpoint=checkpoint,
                            model=ctx.cfg.student.model,
                            prompts=prompt_set(ctx.cfg.run.prompts),
                            grader=graders[task],
                        )
                    )
            finally:
                await backend.close()
            n = sum(len(questions[task]) for task in its_tasks)
            record_phase(ctx.out_dir, "eval", f"answer {checkpoint}", time.perf_counter() - start, backend.tokens,
                         note=f"{backend.done} of {n} questions generated")  # fmt: skip
            answered[0] += n
            current.clear()
    if board is not None:
        board.finish("eval")
    write_eval_json(ctx.out_dir / "eval.json", results)
    return results
