"""Committee: FAIR reasoning distillation from a committee of teacher LLMs, in one command.

    committee --config configs/demo.toml                    # the whole method (python run.py in a checkout)
    committee --config CFG --stage teach                    # one stage
    committee --config CFG --dry-run                        # forecast calls, tokens, USD, time; send nothing
    committee --config CFG --dry-run --pilot 20             # pay for 20 mistakes per dataset, extrapolate
    committee --config CFG --status                         # where the run stands (its batches too); sends nothing

Stages, in order (`all`, the default, runs them all and streams the exam's
mistakes straight into the teachers, so teachers start while the student is
still answering):

  exam    the student answers each dataset's train split; wrong answers -> mistakes.jsonl
  teach   every teacher writes a rationale and feedback per mistake; every rationale is
          peer-reviewed by the other teachers as soon as it arrives; decided samples ->
          dataset.jsonl, train.jsonl, cost_report.{json,md}
  train   DeepSpeed ZeRO fine-tune of the student on train.jsonl -> out_dir/model
  eval    accuracy on each test split, before (base) and after training -> eval.json
  report  rebuild cost_report and report.{md,json} + plots from the run directory

Every stage resumes from the run directory: a call already answered is never sent
(or paid for) again, so rerunning a finished run does nothing and rerunning a
killed one continues. Several [[datasets]] share the teachers' rate limits; every
report is per dataset. A spending cap (`[review] max_usd`) stops new calls when
reached and ends the run cleanly.

Exit codes: 0 done; 1 bad config or data (one line says what and where); 2 bad
command line; 3 the run ended with something missing (failed calls after all
retries, the spending cap, a failed training) - the line says what, and rerunning
the same command retries only that; 130 interrupted (Ctrl-C), 143 terminated
(SIGTERM) - rerun to resume. One run at a time per run directory: a second one on
an out_dir in use is refused at once (exit 1), naming the other process.
API keys are read from the environment variables the config names, never from
the config file, and never printed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

# 0 and 3, the codes of a run that ended, come with its RunResult (committee/results.py).
_EXIT_ERROR, _EXIT_INTERRUPTED, _EXIT_TERMINATED = 1, 130, 143


def _parser() -> argparse.ArgumentParser:
    from stages.job import STAGES

    # No prog: `committee` or `run.py`, as it was started.
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config", required=True, type=Path, help="the run's config: TOML, or JSON for a .json file (see README)"
    )
    parser.add_argument("--stage", choices=STAGES, default="all", help="run one stage only (default: all)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read the config and data, print the forecast per dataset x teacher x stage "
        "(calls, tokens, USD, wall time the rate limits imply) and send nothing",
    )
    parser.add_argument(
        "--mistake-rate",
        type=float,
        default=1.0,
        help="with --dry-run before any exam: the share of training questions assumed wrong (default 1.0)",
    )
    parser.add_argument(
        "--pilot",
        type=int,
        metavar="N",
        help="with --dry-run: first send the whole FAIR graph for N mistakes per dataset (paid, counted against "
        "review.max_usd, reused by the real run) and extrapolate the forecast from what they cost",
    )
    parser.add_argument(
        "--calibrate-from",
        type=Path,
        metavar="DIR",
        help="with --dry-run: learn answer lengths and latencies from the store of an earlier run directory",
    )
    parser.add_argument(
        "--status",
        action="store_true",
        help="print where the run stands from its store (samples, calls and USD per teacher, each batch's state, "
        "counts and age); sends and writes nothing, and works beside the run that holds the directory",
    )
    parser.add_argument("--no-progress", action="store_true", help="no live display; log lines instead")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _project_error(exc: BaseException, kind: type[Exception]) -> Exception | None:
    """`exc` itself or, inside the exception groups task groups raise, the first error of `kind`."""
    if isinstance(exc, kind):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _project_error(inner, kind)
        if found is not None:
            return found
    return None


def main(argv: list[str] | None = None) -> int:
    """The command: parse `argv` (default: the command line), run, return the exit code (see above)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.pilot is not None or args.calibrate_from is not None) and not args.dry_run:
        parser.error("--pilot and --calibrate-from go with --dry-run")
    if args.status and (args.dry_run or args.stage != "all"):
        parser.error("--status goes alone: it only reads the run store")
    if args.pilot is not None and args.pilot < 1:
        parser.error(f"--pilot {args.pilot}: give at least 1 mistake per dataset")
    level = logging.DEBUG if args.verbose else logging.INFO
    if not args.no_progress and sys.stdout.isatty():
        from rich import get_console
        from rich.logging import RichHandler

        # Through the live stage board's console, so log lines print above the board instead of across it.
        handler = RichHandler(console=get_console(), show_path=False, log_time_format="%H:%M:%S")
        logging.basicConfig(level=level, format="%(name)s: %(message)s", handlers=[handler])
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    import anyio

    from committee.config import load
    from committee.job import run_checked
    from core.errors import CommitteeError
    from stages.context import RunContext
    from stages.job import preflight
    from stages.lock import hold_run_dir
    from stages.terminate import Terminated, stop_on_sigterm

    out_dir = None
    try:
        cfg = load(args.config)
        out_dir = cfg.run.out_dir
        if args.status:
            from stages.status import show_status

            # No lock and a read-only store: it may look at a run in progress.
            show_status(cfg)
            return 0
        # `load` checked the config; the run goes on from here without checking it again.
        ctx = RunContext(args.config.resolve(), cfg, progress=not args.no_progress)
        if args.dry_run:
            from stages.forecast import dry_run, pilot_dry_run

            if args.pilot is not None:
                # A pilot sends calls and writes the store like a run, so it holds the run directory
                # too, and stops on SIGTERM like one (the store commits what is queued).
                pilot = partial(pilot_dry_run, ctx, args.pilot, calibrate_from=args.calibrate_from)
                with hold_run_dir(ctx.out_dir):
                    anyio.run(stop_on_sigterm, pilot)
            else:
                # No lock: a plain dry run sends nothing and only reads the run store (a WAL
                # reader may do that beside a running writer).
                dry_run(ctx, mistake_rate=args.mistake_rate, calibrate_from=args.calibrate_from)
            return 0
        preflight(ctx, args.stage)
        result = anyio.run(partial(run_checked, ctx, args.stage, write_config=False))
    except Terminated:
        print(
            f"terminated (SIGTERM): everything answered so far is saved in {out_dir}; rerun the same command to resume",
            file=sys.stderr,
        )
        return _EXIT_TERMINATED
    except Exception as exc:
        error = _project_error(exc, CommitteeError)
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr)
        return _EXIT_ERROR
    except KeyboardInterrupt:
        print(
            f"interrupted: everything answered so far is saved in {out_dir}; rerun the same command to resume",
            file=sys.stderr,
        )
        return _EXIT_INTERRUPTED
    for problem in result.problems:
        print(f"incomplete: {problem.message}", file=sys.stderr)
    return result.exit_code
