"""A provider nobody can tell from the real one: the project's test double for OpenAI, Gemini and Anthropic.

In-process (tests):

    async with run_emulator(EmulatorSpec(models={"m": ModelLimits(rpm=600)})) as emu:
        ... ChatClient("openai", api_key="k", base_url=emu.base_url("openai")) ...
        assert emu.stats().total.duplicates == 0

In another process (benchmarks): `start_emulator_process(spec)` or
`python -m bench.emulator --rpm 600 --latency-ms 300`, then `GET /_emulator/stats`.
"""

from bench.emulator.answers import echo
from bench.emulator.process import start_emulator_process
from bench.emulator.server import Emulator, run_emulator
from bench.emulator.spec import AnswerFn, AnswerRequest, EmulatorSpec, Faults, Latency, ModelLimits
from bench.emulator.stats import EmulatorStats, ModelStats, content_key
from bench.emulator.tokens import count_prompt_tokens, count_tokens

__all__ = [
    "AnswerFn",
    "AnswerRequest",
    "Emulator",
    "EmulatorSpec",
    "EmulatorStats",
    "Faults",
    "Latency",
    "ModelLimits",
    "ModelStats",
    "content_key",
    "count_prompt_tokens",
    "count_tokens",
    "echo",
    "run_emulator",
    "start_emulator_process",
]
