"""Baselines and ablations of the paper over one run's mistakes and store: one command, one table, one plot.

    python -m stages.ablations --config CFG [--variants fair,no_review,single_gpt,alpha_0,alpha_1]

First the configured run itself (exam, teach, train, eval; resumed, so a finished
run costs nothing): that is `fair`. Every other variant reuses its decided samples
(no teacher call is bought again; see dataset/ablation.py), writes its own
`train.jsonl`, trains its own student into `out_dir/ablations/<variant>/` and is
evaluated on the same test split, its answers kept in the run's store. Writes
`out_dir/ablations.md`, `ablations.json` and `plots/ablations.png`: accuracy with 95%
intervals, USD and included samples per variant and dataset.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import anyio
import msgspec
from rich.console import Console

from core.config import Config
from core.errors import CommitteeError, ConfigError
from core.tables import Table, fmt_num, fmt_pct, fmt_usd, to_markdown, to_rich
from dataset.ablation import (
    Variant,
    paper_variants,
    parse_variant,
    restrict,
    variant_usd,
)
from dataset.writer import decode_samples, write_outputs
from prompts.sets import prompt_set
from stages.context import RunContext, load_run_config
from stages.exam import load_student, open_answers
from stages.job import run_job
from stages.sources import test_questions
from store.calls import open_db, sample_bodies
from student.evaluate import EvalEntry, EvalFile, run_eval

log = logging.getLogger(__name__)


class AblationRow(msgspec.Struct, frozen=True, kw_only=True):
    """One variant on one dataset: ablations.json's rows."""

    variant: str
    task: str
    included: int
    usd: float | None
    eval: EvalEntry | None


def variant_config(cfg: Config, variant: Variant) -> Config:
    """The run's config as the variant trains it: its own out_dir, its alpha."""
    out = Path(cfg.run.out_dir) / "ablations" / variant.name
    train = cfg.train if variant.alpha is None else msgspec.structs.replace(cfg.train, alpha=variant.alpha)
    return msgspec.structs.replace(cfg, run=msgspec.structs.replace(cfg.run, out_dir=str(out)), train=train)


def _train_variant(ctx: RunContext, cfg: Config, variant: Variant) -> dict[str, int]:
    """Write the variant's train.jsonl from the run's samples and train its student; records per task."""
    from trainer.launch import launch

    conn = open_db(ctx.store_path)
    try:
        by_task = {
            d.task: [restrict(s, variant) for s in decode_samples(sample_bodies(conn, d.task))] for d in cfg.datasets
        }
    finally:
        conn.close()
    vcfg = variant_config(cfg, variant)
    Path(vcfg.run.out_dir).mkdir(parents=True, exist_ok=True)
    counts = write_outputs(
        by_task,
        Path(vcfg.run.out_dir),
        seed=cfg.run.seed,
        keep_all=cfg.review.keep_all_accepted,
        prompts=prompt_set(cfg.run.prompts),
    )
    if sum(counts.values()):
        launch(ctx.config_path, vcfg)
    return counts


async def _eval_variant(ctx: RunContext, cfg: Config, variant: Variant) -> dict[str, EvalEntry]:
    from prompts.student import resolve_format

    model_dir = Path(variant_config(cfg, variant).run.out_dir) / "model"
    if not (model_dir / "config.json").is_file():
        return {}
    entries: dict[str, EvalEntry] = {}
    with open_answers(ctx) as answers:
        backend = load_student(ctx, model_dir, stage="ablations", phase=f"load {variant.name}")
        try:
            fmt = resolve_format(cfg.student.prompt_format, backend.tokenizer)
            for d in cfg.datasets:
                result = await run_eval(
                    test_questions(d),
                    backend,
                    answers,
                    fmt,
                    checkpoint=variant.name,
                    model=cfg.student.model,
                    prompts=prompt_set(cfg.run.prompts),
                    grader=d.grader,
                )
                entries[d.task] = result.entry
        finally:
            await backend.close()
    return entries


def _fair_evals(ctx: RunContext) -> dict[str, EvalEntry]:
    path = ctx.out_dir / "eval.json"
    if not path.is_file():
        return {}
    evals = msgspec.json.decode(path.read_bytes(), type=EvalFile).evals
    return {e.task: e for e in evals if e.checkpoint == "model"}


async def run_ablations(ctx: RunContext, variants: list[Variant]) -> list[AblationRow]:
    """Run the configured method, then every other variant on its samples; write the table and plot."""
    if ctx.cfg.train.per_dataset or ctx.cfg.train.num_processes > 1:
        raise ConfigError(
            "ablations train each variant's single student in this process: set [train] per_dataset = false "
            "and num_processes = 1 for the ablation run"
        )
    problems = (await run_job(ctx, "all")).problems
    if problems:
        raise CommitteeError(
            f"the run itself did not finish ({problems[0].message}); rerun to resume, then the ablations"
        )
    rows: list[AblationRow] = []
    conn = open_db(ctx.store_path)
    try:
        for variant in variants:
            if variant.name == "fair":
                included = {
                    d.task: sum(s.included for s in decode_samples(sample_bodies(conn, d.task)))
                    for d in ctx.cfg.datasets
                }
                evals = _fair_evals(ctx)
            else:
                included = _train_variant(ctx, ctx.cfg, variant)
                evals = await _eval_variant(ctx, ctx.cfg, variant)
            rows += [
                AblationRow(
                    variant=variant.name,
                    task=d.task,
                    included=included.get(d.task, 0),
                    usd=variant_usd(conn, d.task, variant),
                    eval=evals.get(d.task),
                )
                for d in ctx.cfg.datasets
            ]
    finally:
        conn.close()
    write_ablation_report(ctx.out_dir, rows)
    return rows


def ablation_table(rows: list[AblationRow]) -> Table:
    """One row per variant and dataset: accuracy with its interval, USD, included samples."""
    return Table(
        title="Baselines and ablations (same mistakes, same teacher answers)",
        headers=["variant", "dataset", "accuracy", "95% interval", "USD", "included samples"],
        text_columns=2,
        rows=[
            [
                r.variant,
                r.task,
                fmt_pct(r.eval.accuracy) if r.eval else "not trained",
                f"{fmt_pct(r.eval.ci_low)}-{fmt_pct(r.eval.ci_high)}" if r.eval else "",
                fmt_usd(r.usd),
                fmt_num(r.included),
            ]
            for r in rows
        ],
        note="USD: what the variant's own calls cost (a single teacher: its rationales and feedback; no review: "
        "no review calls); every variant reused the one run's answers, so the set paid once.",
    )


def write_ablation_report(out_dir: Path, rows: list[AblationRow]) -> None:
    """ablations.md, ablations.json and plots/ablations.png in `out_dir`."""
    from reports.plots import plot_variants

    table = ablation_table(rows)
    (out_dir / "ablations.md").write_text("# Baselines and ablations\n\n" + to_markdown(table))
    (out_dir / "ablations.json").write_bytes(msgspec.json.format(msgspec.json.encode(rows), indent=2) + b"\n")
    bars = {(r.variant, r.task): (r.eval.accuracy, r.eval.ci_low, r.eval.ci_high) for r in rows if r.eval}
    plot_variants(bars, out_dir / "plots" / "ablations.png")
    Console().print(to_rich(table))


def main(argv: list[str] | None = None) -> int:
    """`python -m stages.ablations --config CFG [--variants a,b,...]`; exit 1 with one line on a user error."""
    parser = argparse.ArgumentParser(prog="python -m stages.ablations", description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--variants", default=None, help="comma-separated; default: the paper's whole set")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_run_config(args.config)
        variants = (
            paper_variants(cfg)
            if args.variants is None
            else [parse_variant(v.strip(), cfg) for v in args.variants.split(",") if v.strip()]
        )
        anyio.run(run_ablations, RunContext(args.config.resolve(), cfg, progress=False), variants)
    except CommitteeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
