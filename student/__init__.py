"""The student: inference backends (vllm | hf | openai), exam and eval.

backend = make_backend(cfg.student, seed=cfg.run.seed)
fmt = resolve_format(cfg.student.prompt_format, backend.tokenizer)
with AnswersStore.open(out_dir / "store.sqlite") as store:
    summary = await run_exam(questions, backend, store, fmt, send=send, mistakes_path=...)
await backend.close()
"""

from __future__ import annotations

from pathlib import Path

from core.config import StudentSection
from core.errors import ConfigError
from student.backend import Sampling, StudentBackend
from student.models import resolve_model

__all__ = ["Sampling", "StudentBackend", "default_backend", "make_backend"]


def default_backend() -> str:
    """vllm where a CUDA GPU and vllm are present, else hf."""
    from student.vllm_backend import vllm_usable

    return "vllm" if vllm_usable() else "hf"


def make_backend(
    section: StudentSection,
    *,
    model_path: Path | str | None = None,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> StudentBackend:
    """Build the backend `[student] backend` names (default: `default_backend()`).

    `model_path` overrides `section.model` (eval of a trained checkpoint). For the
    local backends it is resolved by `resolve_model` (a directory, a hub id, or
    "smollm2-135m-instruct", converted once into `cache_dir`); for `openai` it is
    the model name the server serves. Raises `ConfigError` (one line) for a missing
    model, a directory without a tokenizer, or a backend that cannot run here.
    """
    spec = str(model_path if model_path is not None else section.model)
    sampling = Sampling.from_section(section, seed=seed)
    backend = section.backend or default_backend()
    if backend == "openai":
        from student.openai_backend import OpenAIBackend

        return OpenAIBackend.from_section(section, model=spec, sampling=sampling)
    if backend == "vllm":
        from student.vllm_backend import NOT_INSTALLED, VLLMBackend, vllm_usable

        # Checked before resolving the model: converting SmolLM2 is wasted when vllm cannot run anyway.
        if not vllm_usable():
            raise ConfigError(NOT_INSTALLED)
        return VLLMBackend.load(resolve_model(spec, cache_dir), section, sampling=sampling)
    from student.hf_backend import HFBackend

    try:
        import transformers  # noqa: F401
    except ImportError:
        raise ConfigError(
            "backend 'hf' needs torch and transformers: `pip install torch transformers` (or `pip install -e .[train]`)"
        ) from None
    return HFBackend.load(
        resolve_model(spec, cache_dir), sampling=sampling, batch_size=section.batch_size, dtype=section.dtype
    )
