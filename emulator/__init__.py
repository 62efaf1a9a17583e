"""A provider nobody can tell from the real one: the project's test double for OpenAI, Gemini and Anthropic.

In-process (tests):

    async with run_emulator(EmulatorSpec(models={"m": ModelLimits(rpm=600)})) as emu:
        ... ChatClient("openai", api_key="k", base_url=emu.base_url("openai")) ...
        assert emu.stats().total.duplicates == 0

Realism, all off by default: `Billing` (abandoned and unusable answers billed),
`Faults` (filtered, refused, truncated, error-in-200, missing usage), `ModelLimits`
(quota_requests, TPM without refund, ITPM/OTPM, requests per day, Groq's headers),
`EmulatorSpec.overloads` (bursts of 503/529), `BatchBehaviour` (the three Batch APIs:
completion delay, per-request errors, expiry, cancel, limits; billed at half price).

In another process (benchmarks): `start_emulator_process(spec)` or
`python -m emulator --rpm 600 --latency-ms 300`, then `GET /_emulator/stats`.
"""

from emulator.answers import echo
from emulator.process import start_emulator_process
from emulator.server import Emulator, run_emulator
from emulator.spec import (
    AnswerFn,
    AnswerRequest,
    BatchBehaviour,
    Billing,
    EmulatorSpec,
    Faults,
    Latency,
    ModelLimits,
    Overload,
)
from emulator.stats import EmulatorStats, ModelStats, content_key
from emulator.tokens import count_prompt_tokens, count_tokens

__all__ = [
    "AnswerFn",
    "AnswerRequest",
    "BatchBehaviour",
    "Billing",
    "Emulator",
    "EmulatorSpec",
    "EmulatorStats",
    "Faults",
    "Latency",
    "ModelLimits",
    "ModelStats",
    "Overload",
    "content_key",
    "count_prompt_tokens",
    "count_tokens",
    "echo",
    "run_emulator",
    "start_emulator_process",
]
