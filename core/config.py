"""The run configuration: one TOML file, decoded into typed Structs.

Decoding is validation: an unknown key, a wrong type or a bad value is a
`ConfigError` whose one line names the file and the key (`$.teachers[1].rpm`).
Paths in the file may be absolute or relative to the file itself; `load_config`
resolves them. API keys are never in the file, only the names of the environment
variables that hold them.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Literal

import msgspec

from core.calls import HostName, ProviderName, TokenLimitField
from core.capabilities import ReasoningControl, check_teacher, teacher_request
from core.errors import ConfigError
from core.graders import import_grader

TaskName = Literal["gsm8k", "svamp", "strategyqa", "logiqa"]
Stage = Literal["rationale", "feedback", "review"]
GraderName = Literal["committee", "authors"]
TruncationSide = Literal["left", "right"]
# The paper's effective batch: 1 process x micro-batch 8 x grad-accum 2 (the authors' train.py).
PAPER_EFFECTIVE_BATCH = 16


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


LoggerName = Literal["tensorboard", "wandb"]


class RunSection(_Section):
    name: str
    out_dir: str
    seed: int = 731
    log_to: tuple[LoggerName, ...] = ()
    # "committee", "paper" or a folder of templates (see prompts/sets.py).
    prompts: str = "committee"


AnswerKind = Literal["number", "choice", "boolean", "exact", "math"]


class AnswerSection(_Section):
    """How a task's answers are read from a reply and graded (tasks/answer_types/).

    The keys after `grader` each belong to one type; unset, the type's default applies
    (set for another type, they are an error, since they would do nothing).
    """

    type: AnswerKind = "exact"
    # "module:function" that grades instead of `type`'s rule, imported here so a typo stops the load
    # (core/graders.py has its signature); `type` still reads the answer shown in records.
    grader: str | None = None
    # A grader's float score counts as correct from this value up.
    pass_score: float | None = None
    # number: |predicted - gold| <= tolerance + relative_tolerance * |gold| (defaults 1e-4 and 0).
    tolerance: float | None = None
    relative_tolerance: float | None = None
    # boolean: words read as yes / no beside true, yes / false, no.
    true_words: tuple[str, ...] | None = None
    false_words: tuple[str, ...] | None = None
    # choice: how many options every question has (letters A..); unset: as many as each question lists.
    n_options: int | None = None
    # exact: how both sides are normalised before they are compared, and a regex that finds the answer.
    case_sensitive: bool | None = None
    ignore_punctuation: bool | None = None
    ignore_articles: bool | None = None
    pattern: str | None = None

    def __post_init__(self) -> None:
        for key, types in _ANSWER_KEYS.items():
            if getattr(self, key) is not None and self.type not in types:
                raise ValueError(f"`{key}` applies to answer type {' or '.join(types)}, not {self.type!r}")
        if self.pass_score is not None and self.grader is None:
            raise ValueError("`pass_score` applies to a `grader`'s score; set `grader` or remove it")
        for key in ("tolerance", "relative_tolerance"):
            value = getattr(self, key)
            if value is not None and not value >= 0:
                raise ValueError(f"`{key}` must be >= 0, got {value}")
        if self.n_options is not None and not 2 <= self.n_options <= 26:
            raise ValueError(f"`n_options` must be 2..26 (one letter each), got {self.n_options}")
        for key in ("true_words", "false_words"):
            if any(not word.strip() for word in getattr(self, key) or ()):
                raise ValueError(f"`{key}` holds an empty word")
        if self.pattern is not None:
            try:
                compiled = re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"`pattern` is not a valid regular expression: {exc}") from None
            if compiled.groups > 1:
                raise ValueError(f"`pattern` may have one capture group (the answer), it has {compiled.groups}")
        if self.grader is not None:
            import_grader(self.grader)


# The type-specific keys of AnswerSection and the types they belong to.
_ANSWER_KEYS: dict[str, tuple[AnswerKind, ...]] = {
    "tolerance": ("number",),
    "relative_tolerance": ("number",),
    "true_words": ("boolean",),
    "false_words": ("boolean",),
    "n_options": ("choice",),
    "case_sensitive": ("exact",),
    "ignore_punctuation": ("exact",),
    "ignore_articles": ("exact",),
    "pattern": ("exact",),
}


class DatasetSection(_Section):
    task: TaskName
    # A folder laid out like ../shared/data/<task>, "hf:<dataset name>", or "demo"
    # for the few dozen questions that ship inside the repository.
    source: str = "demo"
    limit: int | None = None
    test_limit: int | None = None
    mistakes: str | None = None
    on_bad_line: Literal["stop", "skip"] = "stop"
    # How the student's answers are graded: ours, or the FAIR authors' string comparison.
    grader: GraderName = "committee"

    def __post_init__(self) -> None:
        for key in ("limit", "test_limit"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ValueError(f"`{key}` must be >= 0, got {value}")


class TeacherSection(_Section):
    name: str
    provider: ProviderName
    model: str
    # The environment variable holding the key; not needed for `base_url = "emulator"`.
    api_key_env: str | None = None
    base_url: str | None = None
    rpm: float | None = None
    tpm: float | None = None
    max_in_flight: int = 64
    price_in_per_mtok: float | None = None
    price_out_per_mtok: float | None = None
    # Cached prompt tokens (OpenAI cached, Anthropic cache reads, Gemini cached content) and
    # Anthropic's cache writes; the price table's figures when unset.
    price_cached_in_per_mtok: float | None = None
    price_cache_write_per_mtok: float | None = None
    # Unset: 0.8 and 1.0 where the model takes them, nothing where it refuses them (core/capabilities.py).
    temperature: float | None = None
    top_p: float | None = None
    # The visible answer; a thinking budget comes on top (see `reasoning`).
    max_tokens: int = 512
    # "low" | "medium" | "high" | a thinking budget in tokens | "off"; unset: the model's entry in
    # core/capabilities.py (OpenAI medium, Gemini 2.5 Pro/Flash medium, Claude off).
    reasoning: Literal["low", "medium", "high", "off"] | int | None = None
    # Thinking tokens expected per call, for --dry-run; unset: the capability table's figure.
    reasoning_tokens_estimate: int | None = None
    # Overrides of the capability table for a model it does not know (or knows wrong).
    accepts_sampling: bool | None = None
    max_tokens_field: TokenLimitField | None = None
    reasoning_control: ReasoningControl | None = None
    min_thinking_budget: int | None = None
    timeout_s: float = 120.0
    max_attempts: int = 6
    # The authors sent their GPT teacher a system message and the others none.
    system_message: bool = False
    # Who serves an openai-wire teacher (none: OpenAI itself); see adapters/hosts.py.
    host: HostName | None = None
    api_version: str | None = None
    deployment: str | None = None
    site_url: str | None = None
    site_title: str | None = None
    # "batch": through the provider's Batch API (half price, results within 24 hours; see README).
    mode: Literal["sync", "batch"] = "sync"
    # A request that failed inside batches `max_attempts` times: given up, or sent through the sync lane.
    fallback: Literal["none", "sync"] = "none"
    # A batch goes out once its first request has waited this long for company (or it is full).
    batch_window_s: float = 30.0
    # How often a submitted batch is polled.
    batch_poll_s: float = 60.0
    # Fewer requests per batch than the provider's limit (unset: the provider's limit).
    batch_max_requests: int | None = None
    # For --dry-run: the hours a batch is expected to take (providers promise 24 at most).
    batch_expected_hours: float = 1.0

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"`name` must be a short word of letters, digits, - or _, got {self.name!r}")
        self._check_host()
        for key in ("rpm", "tpm"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ValueError(f"`{key}` must be > 0, got {value}")
        if self.max_in_flight < 1:
            raise ValueError(f"`max_in_flight` must be >= 1, got {self.max_in_flight}")
        if self.max_tokens < 1:
            raise ValueError(f"`max_tokens` must be >= 1, got {self.max_tokens}")
        if self.max_attempts < 1:
            raise ValueError(f"`max_attempts` must be >= 1, got {self.max_attempts}")
        self._check_batch()
        try:
            check_teacher(self)
        except ValueError as exc:
            raise ValueError(f"teacher {self.name!r}: {exc}") from None

    def _check_batch(self) -> None:
        who = f"teacher {self.name!r}"
        if self.mode == "batch" and self.host not in (None, "openai"):
            raise ValueError(
                f"{who}: `mode = 'batch'` needs the provider's own Batch API; host {self.host!r} has none "
                "(use mode = 'sync', or OpenAI, Anthropic or Gemini directly)"
            )
        if self.mode == "sync" and self.fallback != "none":
            raise ValueError(f"{who}: `fallback` is for mode = 'batch'; remove it or set mode = 'batch'")
        for key in ("batch_window_s", "batch_poll_s", "batch_expected_hours"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{who}: `{key}` must be > 0, got {getattr(self, key)}")
        if self.batch_max_requests is not None and self.batch_max_requests < 1:
            raise ValueError(f"{who}: `batch_max_requests` must be >= 1, got {self.batch_max_requests}")

    def _check_host(self) -> None:
        """The host keys agree with each other; each error names the teacher and the key."""
        who = f"teacher {self.name!r}"
        if self.host is not None and self.provider != "openai":
            raise ValueError(f"{who}: `host` is for provider = 'openai' (the OpenAI wire); remove it")
        if self.host == "azure":
            for key in ("api_version", "deployment", "base_url"):
                if not getattr(self, key):
                    example = {
                        "api_version": "2024-10-21",
                        "deployment": "my-gpt-4o",
                        "base_url": "https://NAME.openai.azure.com",
                    }
                    raise ValueError(f"{who}: host = 'azure' needs `{key}` (e.g. {example[key]!r})")
        elif self.api_version is not None or self.deployment is not None:
            key = "api_version" if self.api_version is not None else "deployment"
            raise ValueError(f"{who}: `{key}` is for host = 'azure' only; remove it or set host = 'azure'")
        if self.host != "openrouter" and (self.site_url is not None or self.site_title is not None):
            key = "site_url" if self.site_url is not None else "site_title"
            raise ValueError(f"{who}: `{key}` is for host = 'openrouter' only; remove it or set host = 'openrouter'")
        if self.host in ("vllm", "llamacpp", "compatible") and not self.base_url:
            raise ValueError(f"{who}: host = {self.host!r} needs `base_url` (the server's URL ending in /v1)")


class ReviewSection(_Section):
    threshold: float = 4.0
    # Accept only a mean strictly above `threshold`: the authors' code used mean > 3.
    strict: bool = False
    # Baselines of the paper: no peer review (every rationale accepted), or one teacher alone without review.
    peer_review: bool = True
    single_teacher: str | None = None
    skip_decided: bool = False
    skip_wrong_answer: bool = False
    max_usd: float | None = None
    # Beyond the paper: keep every accepted rationale and every feedback in train.jsonl
    # instead of one random pick of each per sample.
    keep_all_accepted: bool = False
    # Samples worked on at once; bounds memory, not throughput (lanes bound that).
    samples_in_flight: int = 512
    # Ask for review scores through each provider's structured output instead of the
    # paper's free text ending in a bracketed score.
    structured: bool = False

    def __post_init__(self) -> None:
        if not 1.0 <= self.threshold <= 5.0:
            raise ValueError(f"`threshold` must be within 1..5, got {self.threshold}")
        if self.max_usd is not None and self.max_usd < 0:
            raise ValueError(f"`max_usd` must be >= 0, got {self.max_usd}")
        if self.samples_in_flight < 1:
            raise ValueError(f"`samples_in_flight` must be >= 1, got {self.samples_in_flight}")


class StudentSection(_Section):
    # A model directory, a hub id, or "smollm2-135m-instruct" for the PyPI-shipped GGUF.
    model: str = "smollm2-135m-instruct"
    backend: Literal["vllm", "hf", "openai"] | None = None
    batch_size: int = 16
    temperature: float = 0.3
    top_p: float = 0.9
    top_k: int = 50
    max_new_tokens: int = 512
    greedy: bool = False
    # How the student sees a question, at exam, in training and at eval alike:
    # its chat template ("chat"), the paper's "### Instruction / ### Input /
    # ### Response" layout ("instruction"), or chat when the tokenizer has a template.
    prompt_format: Literal["auto", "chat", "instruction"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # vllm backend
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    # openai backend: an OpenAI-compatible server serving the student
    base_url: str | None = None
    api_key_env: str | None = None
    rpm: float | None = None
    max_in_flight: int = 16

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise ValueError(f"`max_new_tokens` must be >= 1, got {self.max_new_tokens}")


class LoraSection(_Section):
    """LoRA adapters (PEFT) instead of a full fine-tune: only the adapters train."""

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    # Leaf names of the linear layers to adapt; these are Llama/Qwen/Mistral's attention and MLP.
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    merge: bool = False

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"`r` must be >= 1, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` must be within 0..1, got {self.dropout}")
        if not self.target_modules:
            raise ValueError("`target_modules` must name at least one module")


class TrainSection(_Section):
    epochs: float = 10
    max_steps: int | None = None
    micro_batch_size: int = 8
    grad_accum: int = 2
    lr: float = 1e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    # After warmup: keep the peak (the authors' runs), decay linearly to 0, or follow a cosine to 0.
    lr_schedule: Literal["constant", "linear", "cosine"] = "linear"
    # "left": cut the prompt's head, keep the response; "right": the authors' cut of the sequence's tail.
    truncation_side: TruncationSide = "left"
    # One student per benchmark (the paper), each trained on its own records, instead of one on their union.
    per_dataset: bool = False
    max_length: int = 512
    max_grad_norm: float = 0.3
    alpha: float = 0.5
    zero_stage: int = 0
    offload_optimizer: bool = False
    offload_params: bool = False
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    gradient_checkpointing: bool = False
    attn_implementation: Literal["auto", "flash_attention_2", "sdpa", "eager"] = "auto"
    save_every_steps: int | None = None
    num_processes: int = 1
    launcher: Literal["torchrun", "deepspeed"] = "torchrun"
    hostfile: str | None = None
    deepspeed_config: str | None = None
    lora: LoraSection | None = None
    quantization: Literal["none", "4bit"] = "none"

    def __post_init__(self) -> None:
        if self.quantization == "4bit" and self.lora is None:
            raise ValueError("`quantization = '4bit'` (QLoRA) needs `[train.lora]`: 4-bit weights cannot be trained")
        if self.lora is not None and self.zero_stage == 3:
            # ZeRO-3 would partition a frozen base that LoRA never updates; stages 0-2 keep it whole.
            raise ValueError("`lora` needs `zero_stage` 0, 1 or 2 (the frozen base is not partitioned)")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"`zero_stage` must be 0, 1, 2 or 3, got {self.zero_stage}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"`alpha` must be within 0..1, got {self.alpha}")
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("`offload_params` needs `zero_stage = 3`")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("`offload_optimizer` needs `zero_stage` 1, 2 or 3")
        for key in ("micro_batch_size", "grad_accum", "max_length", "num_processes"):
            if getattr(self, key) < 1:
                raise ValueError(f"`{key}` must be >= 1, got {getattr(self, key)}")


class DpoSection(_Section):
    """Preference pairs from peer review, and the optional DPO stage after SFT."""

    enabled: bool = False
    min_margin: float = 1.0
    beta: float = 0.1
    lr: float = 1e-6
    epochs: float = 1
    max_steps: int | None = None
    micro_batch_size: int = 4
    grad_accum: int = 1
    warmup_ratio: float = 0.1

    def __post_init__(self) -> None:
        if self.min_margin < 0:
            raise ValueError(f"`min_margin` must be >= 0, got {self.min_margin}")
        if self.beta <= 0:
            raise ValueError(f"`beta` must be > 0, got {self.beta}")
        for key in ("micro_batch_size", "grad_accum"):
            if getattr(self, key) < 1:
                raise ValueError(f"`{key}` must be >= 1, got {getattr(self, key)}")


class HubSection(_Section):
    """Sharing the way the Hugging Face Hub expects: a `datasets` export with a card, a model card, pushes."""

    export_dataset: bool = False
    push: bool = False
    dataset_repo: str | None = None
    model_repo: str | None = None
    token_env: str = "HF_TOKEN"
    private: bool = True
    license: str | None = None

    def __post_init__(self) -> None:
        if self.push and not (self.dataset_repo or self.model_repo):
            raise ValueError("`push = true` needs `dataset_repo` and/or `model_repo` (e.g. 'me/committee-svamp')")


class EmulatorSection(_Section):
    """Serve teachers whose `base_url = "emulator"` from bench's provider emulator.

    For the offline demo and for tests: the emulator enforces each teacher's
    rpm/tpm and answers with scripted FAIR replies (or a JSONL of canned ones).
    """

    answers: str = "fair"
    latency_ms: float = 150.0
    latency_sigma: float = 0.3
    ms_per_output_token: float = 0.0
    seed: int = 0
    # Per teacher model: the share of its free-text reviews that forget the brackets around
    # the score (and write it as a word), as real reviewers sometimes do.
    forget_brackets: dict[str, float] = {}

    def __post_init__(self) -> None:
        for model, share in self.forget_brackets.items():
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"`forget_brackets` of {model!r} must be within 0..1, got {share}")


class Config(_Section):
    run: RunSection
    datasets: list[DatasetSection]
    teachers: list[TeacherSection] = []
    review: ReviewSection = msgspec.field(default_factory=ReviewSection)
    student: StudentSection = msgspec.field(default_factory=StudentSection)
    train: TrainSection = msgspec.field(default_factory=TrainSection)
    dpo: DpoSection = msgspec.field(default_factory=DpoSection)
    hub: HubSection = msgspec.field(default_factory=HubSection)
    emulator: EmulatorSection | None = None

    @property
    def out_dir(self) -> Path:
        return Path(self.run.out_dir)


def effective_batch_warning(train: TrainSection) -> str | None:
    """A one-line warning when processes x micro-batch x grad-accum differs from the paper's 16, else None."""
    effective = train.num_processes * train.micro_batch_size * train.grad_accum
    if effective == PAPER_EFFECTIVE_BATCH:
        return None
    return (
        f"[train] effective batch is {effective} samples per optimizer step (num_processes {train.num_processes} x "
        f"micro_batch_size {train.micro_batch_size} x grad_accum {train.grad_accum}); the paper used "
        f"{PAPER_EFFECTIVE_BATCH} (1 x 8 x 2): {'lower' if effective > PAPER_EFFECTIVE_BATCH else 'raise'} "
        "grad_accum or micro_batch_size to match it"
    )


def _decode(text: bytes, path: Path) -> Config:
    # JSON as well as TOML: the Python API writes a Config built in code as out_dir/config.json for trainer processes.
    is_json = path.suffix == ".json"
    try:
        return msgspec.json.decode(text, type=Config) if is_json else msgspec.toml.decode(text, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if is_json else 'TOML'}: {exc}") from None


def _resolve(base: Path, value: str | None) -> str | None:
    if value is None or value.startswith("hf:") or value == "demo":
        return value
    path = Path(os.path.expanduser(value))
    return str(path if path.is_absolute() else (base / path).resolve())


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, validate and resolve a run config (TOML; JSON when the file name ends in `.json`).

    Raises `ConfigError` (one line naming the file and key) for anything wrong that
    can be known without sending a request: unknown keys, bad values, duplicate
    teacher names, fewer than two teachers, an out_dir that is a file.
    """
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    # A `grader = "module:function"` may live beside the config; appended, so it never shadows an installed module.
    if str(path.resolve().parent) not in sys.path:
        sys.path.append(str(path.resolve().parent))
    return checked_config(_decode(text, path), path, path.resolve().parent)


def checked_config(cfg: Config, path: str | os.PathLike[str], base: Path) -> Config:
    """Check `cfg` across its sections and resolve its relative paths against `base`, in place; returns `cfg`.

    What `load_config` does after decoding, for a Config built in code too (`committee.config_from`).
    `path` names the config in errors: its file, or a label. Raises `ConfigError` as `load_config` does.
    """
    names = [t.name for t in cfg.teachers]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{path}: $.teachers: teacher {name!r} is listed twice; give each a unique `name`")
    seen: dict[tuple, str] = {}
    for t in cfg.teachers:
        # The store keys answers by content, so two teachers sending identical requests
        # would share one set of answers: the committee would be one teacher twice.
        same = (t.provider, teacher_request(t, ()))
        if same in seen:
            raise ConfigError(
                f"{path}: $.teachers: teachers {seen[same]!r} and {t.name!r} would send identical requests "
                "(same provider, model and sampling) and share their answers; give them different models or sampling"
            )
        seen[same] = t.name
    if cfg.teachers and len(cfg.teachers) < 2:
        raise ConfigError(f"{path}: $.teachers: peer review needs at least two teachers, got {len(cfg.teachers)}")
    if not cfg.datasets:
        raise ConfigError(f"{path}: $.datasets: list at least one [[datasets]] entry")
    tasks = [d.task for d in cfg.datasets]
    for task in tasks:
        if tasks.count(task) > 1:
            raise ConfigError(f"{path}: $.datasets: task {task!r} is listed twice")
    if cfg.review.single_teacher is not None and cfg.review.single_teacher not in names:
        raise ConfigError(
            f"{path}: $.review.single_teacher: {cfg.review.single_teacher!r} is not a teacher; "
            f"use one of {', '.join(names)}"
        )
    if cfg.train.per_dataset and len(cfg.datasets) < 2:
        raise ConfigError(
            f"{path}: $.train.per_dataset: one student per benchmark needs two or more [[datasets]], got "
            f"{len(cfg.datasets)}; remove per_dataset (one dataset already trains its own student)"
        )
    if cfg.train.per_dataset and cfg.dpo.enabled:
        raise ConfigError(
            f"{path}: $.train.per_dataset: the dpo stage trains one model, not one per benchmark; "
            f"set [dpo] enabled = false or drop per_dataset"
        )
    for t in cfg.teachers:
        if t.base_url == "emulator" and cfg.emulator is None:
            raise ConfigError(
                f"{path}: $.teachers[{names.index(t.name)}].base_url: 'emulator' needs an [emulator] section"
            )

    cfg.run.out_dir = _resolve(base, cfg.run.out_dir) or cfg.run.out_dir
    if Path(cfg.run.out_dir).exists() and not Path(cfg.run.out_dir).is_dir():
        raise ConfigError(f"{path}: $.run.out_dir: {cfg.run.out_dir} exists and is not a directory")
    for d in cfg.datasets:
        d.source = _resolve(base, d.source) or d.source
        d.mistakes = _resolve(base, d.mistakes)
    if cfg.student.model != "smollm2-135m-instruct" and cfg.student.model.count("/") != 1:
        cfg.student.model = _resolve(base, cfg.student.model) or cfg.student.model
    cfg.train.hostfile = _resolve(base, cfg.train.hostfile)
    cfg.train.deepspeed_config = _resolve(base, cfg.train.deepspeed_config)
    if cfg.run.prompts not in ("committee", "paper"):
        cfg.run.prompts = _resolve(base, cfg.run.prompts) or cfg.run.prompts
    return cfg


def api_key(teacher: TeacherSection) -> str:
    """The teacher's API key from its environment variable; ConfigError if unset."""
    if not teacher.api_key_env:
        raise ConfigError(f"teacher {teacher.name!r}: set `api_key_env` to the environment variable holding its key")
    value = os.environ.get(teacher.api_key_env)
    if not value:
        raise ConfigError(
            f"teacher {teacher.name!r}: environment variable {teacher.api_key_env} is not set "
            f"(it should hold the {teacher.provider} API key)"
        )
    return value


if sys.version_info < (3, 11):  # pragma: no cover - msgspec.toml needs tomli there
    import tomli  # noqa: F401  # pyright: ignore[reportMissingImports]  # absent where CI type-checks (3.11)
