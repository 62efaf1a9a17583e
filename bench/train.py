"""Trainer throughput: tokens/s and peak memory per ZeRO stage, full fine-tuning vs LoRA, and MFU on a GPU.

    python -m bench.train                       # SmolLM2-135M, ZeRO 0/2/3 full and 0/2 LoRA, a few steps each
    python -m bench.train --stages 2 --steps 8 --json bench_train.json
    python -m bench.train --stages 0 --modes full lora --lora-r 16

Each stage trains in its own child process (`--one`), so each peak-memory figure is
that stage's own (ru_maxrss only ever grows within a process). Records are the demo
SVAMP questions with scripted feedback and rationales: the numbers measure the
trainer, not the data. Tokens count real (unpadded) tokens of both FAIR parts; the
first step (allocations, kernel selection) is left out of the rate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec

from core.records import TrainRecord
from trainer.step_log import TrainStepRow, read_step_log

# Dense bf16 peak of the cards the device tool lends, from NVIDIA's data sheets (SXM).
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def demo_train_records(n: int) -> list[TrainRecord]:
    """`n` training records from the demo SVAMP questions (cycled), with hand-scripted texts.

    The student answer is wrong by a fixed offset; the feedback names the error and
    the rationale works the published equation, as a teacher's would.
    """
    from tasks.loaders import load_split

    questions = load_split("svamp", "demo", "train")
    records = []
    for i in range(n):
        q = questions[i % len(questions)]
        equation = q.gold_text.strip().strip("()").strip()
        wrong = f"{float(q.gold) + 7:g}"
        records.append(
            TrainRecord(
                id=f"{q.id}-{i}",
                task="svamp",
                question=q.question,
                student_answer=f"I add the numbers I see and get {wrong}. The answer is {wrong}.",
                feedback=(
                    f"The student combined the numbers without asking what the question wants, so {wrong} is wrong. "
                    f"The question needs {equation}, which is {q.gold}. The answer is {q.gold}."
                ),
                rationale=(
                    f"Let's find what is asked and which numbers it depends on. "
                    f"The quantity asked for is {equation} = {q.gold}. The answer is {q.gold}."
                ),
            )
        )
    return records


def _peak_memory_gib(cuda: bool) -> float:
    import torch

    if cuda:
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _peak_flops() -> float | None:
    import torch

    name = torch.cuda.get_device_name()
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


def run_one(args: argparse.Namespace) -> dict:
    """Train one stage for warmup + `steps` steps in this process; returns the measurements."""
    import torch

    from core.config import load_config
    from trainer.recipe import train

    cuda = torch.cuda.is_available()
    out = Path(args.run_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = demo_train_records(args.micro_batch * args.grad_accum * (args.steps + 1))
    (out / "train.jsonl").write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in records))
    toml = f"""
[run]
name = "bench-train"
out_dir = "{out}"

[[datasets]]
task = "svamp"

[student]
model = "{args.model_dir}"

[train]
max_steps = {args.steps + 1}
micro_batch_size = {args.micro_batch}
grad_accum = {args.grad_accum}
max_length = {args.max_length}
zero_stage = {args.one}
precision = "{args.precision}"
lr = 1e-5
"""
    if args.mode == "lora":
        toml += f"\n[train.lora]\nr = {args.lora_r}\n"
    (out / "run.toml").write_text(toml)
    cfg = load_config(out / "run.toml")
    result = train(cfg)
    rows = read_step_log(out / "train_log.jsonl", TrainStepRow)
    timed = rows[1:] or rows
    tokens_per_s = sum(r.tokens_per_s for r in timed) / len(timed)
    n_params = _param_count(args.model_dir)
    row = {
        "stage": args.one,
        "mode": args.mode,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "precision": "bf16" if cuda and args.precision == "auto" else args.precision.replace("auto", "fp32"),
        "tokens_per_s": tokens_per_s,
        "peak_memory_gib": _peak_memory_gib(cuda),
        "final_loss": result.final_loss,
        "padding_fraction": result.padding_fraction,
        "params": n_params,
        "mfu": None,
    }
    peak = _peak_flops() if cuda else None
    # 6N FLOPs per token holds for full fine-tuning only: LoRA skips the base weights' gradients.
    if peak and args.mode == "full":
        # 6 N FLOPs per token (forward 2N + backward 4N), the usual MFU estimate.
        row["mfu"] = 6 * n_params * tokens_per_s / peak
    return row


def _param_count(model_dir: str) -> int:
    """Parameters of the model, counted on the meta device (no weights loaded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="[student].model spec or a model directory")
    parser.add_argument("--stages", type=int, nargs="+", default=[0, 2, 3])
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps (one more runs first, untimed)")
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["full", "lora"],
        choices=["full", "lora"],
        help="full fine-tuning, LoRA ([train.lora] with the default target modules), or both",
    )
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank")
    parser.add_argument("--mode", default="full", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child: run this stage, print JSON
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one is not None:
        print(json.dumps(run_one(args)))
        return 0

    from rich.console import Console
    from rich.table import Table

    from trainer.recipe import resolve_model_dir

    model_dir = resolve_model_dir(args.model)  # converts SmolLM2 once, before the children race to
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        # LoRA refuses ZeRO-3 (the frozen base is not partitioned).
        runs = [(stage, mode) for mode in args.modes for stage in args.stages if not (mode == "lora" and stage == 3)]
        for stage, mode in runs:
            command = [
                sys.executable, "-m", "bench.train", "--one", str(stage), "--model-dir", str(model_dir),
                "--run-dir", str(Path(tmp) / f"{mode}-zero{stage}"), "--steps", str(args.steps),
                "--micro-batch", str(args.micro_batch), "--grad-accum", str(args.grad_accum),
                "--max-length", str(args.max_length), "--precision", args.precision,
                "--mode", mode, "--lora-r", str(args.lora_r),
            ]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                print(f"{mode} ZeRO-{stage} failed (exit {done.returncode})", file=sys.stderr)
                return 1
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    load_after = os.getloadavg()

    table = Table(title=f"trainer: {model_dir.name}, micro-batch {args.micro_batch}, max_length {args.max_length}")
    for column in ("mode", "ZeRO", "device", "precision", "tokens/s", "peak mem GiB", "MFU", "padding"):
        table.add_column(column, justify="right")
    for r in rows:
        mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        table.add_row(
            r["mode"], str(r["stage"]), r["device"], r["precision"], f"{r['tokens_per_s']:,.0f}",
            f"{r['peak_memory_gib']:.2f}", mfu, f"{100 * r['padding_fraction']:.1f}%",
        )  # fmt: skip
    console = Console()
    console.print(table)
    console.print(f"load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f}; {os.cpu_count()} CPUs")
    if args.json:
        report = {"model": str(model_dir), "settings": vars(args) | {"json": str(args.json)}, "results": rows,
                  "load_avg_before": load_before, "load_avg_after": load_after, "cpus": os.cpu_count()}  # fmt: skip
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
