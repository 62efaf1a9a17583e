"""`python -m emulator`: serve an emulated provider until killed.

    python -m emulator --rpm 600 --tpm 100000 --latency-ms 300 --latency-sigma 0.5

Prints `emulator listening on http://127.0.0.1:PORT` once it accepts connections.
Options override the matching fields of `--spec FILE.json` (an `EmulatorSpec`). The Batch APIs
(OpenAI, Anthropic, Gemini) follow the spec's `batch` section, e.g. `{"batch": {"delay_s": 5,
"error_share": 0.05, "expire_after_s": 60}}` (emulator/spec.py, `BatchBehaviour`).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import msgspec

from core.errors import CommitteeError
from emulator.process import READY_PREFIX
from emulator.server import run_emulator
from emulator.spec import EmulatorSpec


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--spec", type=Path, help="EmulatorSpec as JSON")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--rpm", type=float, help="requests per minute of every model not in the spec")
    parser.add_argument("--tpm", type=float, help="tokens per minute of every model not in the spec")
    parser.add_argument("--latency-ms", type=float, help="median latency")
    parser.add_argument("--latency-sigma", type=float, help="lognormal sigma (0: fixed)")
    parser.add_argument("--fail-rate", type=float, help="share of admitted requests answered 500/503")
    parser.add_argument("--answers", help="echo | FILE.jsonl | package.module:function")
    return parser.parse_args(argv)


def build_spec(args: argparse.Namespace) -> EmulatorSpec:
    """The spec file (or defaults) with the command-line overrides applied."""
    spec = EmulatorSpec()
    if args.spec is not None:
        try:
            spec = msgspec.json.decode(args.spec.read_bytes(), type=EmulatorSpec)
        except (OSError, msgspec.DecodeError) as exc:
            raise SystemExit(f"{args.spec}: not a usable emulator spec: {exc}") from None
    replace = msgspec.structs.replace
    limits = spec.default_limits
    if args.rpm is not None:
        limits = replace(limits, rpm=args.rpm)
    if args.tpm is not None:
        limits = replace(limits, tpm=args.tpm)
    latency = spec.latency
    if args.latency_ms is not None:
        latency = replace(latency, median_ms=args.latency_ms)
    if args.latency_sigma is not None:
        latency = replace(latency, sigma=args.latency_sigma)
    faults = spec.faults if args.fail_rate is None else replace(spec.faults, error_rate=args.fail_rate)
    answers = spec.answers if args.answers is None else args.answers
    return replace(spec, default_limits=limits, latency=latency, faults=faults, answers=answers)


async def _serve(spec: EmulatorSpec, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with run_emulator(spec, port=port) as emulator:
        print(f"{READY_PREFIX}{emulator.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    try:
        asyncio.run(_serve(build_spec(args), args.port))
    except (CommitteeError, ValueError, OSError) as exc:
        sys.exit(f"emulator: {exc}")


if __name__ == "__main__":
    main()
