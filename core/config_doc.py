"""The config reference in README, generated from the msgspec schema itself.

`python -m core.config_doc` prints the Markdown tables; a test checks that
README holds exactly this text and that every config key has a description, so
the reference can never drift from the code.
"""

from __future__ import annotations

import json

import msgspec

from core.config import (
    AnswerSection,
    DatasetSection,
    DpoSection,
    EmulatorSection,
    HubSection,
    LoraSection,
    ReviewSection,
    RunSection,
    StudentSection,
    TeacherSection,
    TrainSection,
)

SECTIONS: list[tuple[str, type[msgspec.Struct], str]] = [
    ("[run]", RunSection, "The run's name, directory and seed."),
    ("[[datasets]]", DatasetSection, "One entry per benchmark; several share the teachers' rate limits."),
    (
        "[datasets.answer]",
        AnswerSection,
        "A task you define: how its answers are read and graded (tasks/answer_types/). The keys after `grader` "
        "belong to one type each.",
    ),
    ("[[teachers]]", TeacherSection, "At least two: each rationale is reviewed by every other teacher."),
    ("[review]", ReviewSection, "Peer review, the options beyond the paper, and the spending cap."),
    ("[student]", StudentSection, "The student model and how it generates at exam and eval."),
    ("[train]", TrainSection, "The DeepSpeed ZeRO fine-tune (defaults are the paper's)."),
    (
        "[train.lora]",
        LoraSection,
        "Optional: LoRA adapters (PEFT) in the same DeepSpeed loop, instead of full fine-tuning.",
    ),
    (
        "[dpo]",
        DpoSection,
        "Preference pairs from peer review (`preferences.jsonl`) and the optional DPO stage after SFT.",
    ),
    ("[hub]", HubSection, "Optional: `hf_dataset/` export with a dataset card, model cards, and pushes to the Hub."),
    ("[emulator]", EmulatorSection, 'Optional: serve teachers whose base_url is "emulator" locally.'),
]

DESCRIPTIONS: dict[str, str] = {
    "run.name": "Name shown in reports.",
    "run.out_dir": "Run directory (relative to the config file): store, outputs, reports, model.",
    "run.prompts": "Prompt set: `committee` (this project's wording), `paper` (the FAIR authors' prompts, composed as "
    "their code does; prompts/paper/) or a folder with the committee set's template files in your wording.",
    "run.seed": "Seed for sampling, the per-sample rationale/feedback pick and training (paper: 731).",
    "run.log_to": "Experiment loggers: `tensorboard` (event files in `out_dir/tensorboard/`) and/or `wandb` (offline "
    "unless `WANDB_MODE` is set); training and teach metrics, with the config attached.",
    "datasets.task": "gsm8k, svamp, strategyqa or logiqa.",
    "datasets.source": "A folder laid out like shared/data/<task>, `hf:<dataset>[:config]` (needs `datasets` "
    "and a network), or `demo` (the SVAMP questions shipped in the repo).",
    "datasets.limit": "At most this many exam questions (train split), or imported mistakes.",
    "datasets.test_limit": "At most this many eval questions (test split).",
    "datasets.mistakes": "Import mistakes (the FAIR authors' *_false_round0.json format) instead of the exam.",
    "datasets.on_bad_line": "`stop` at a malformed data record (naming file and line) or `skip` it with a warning.",
    "teachers.name": "Short name used in records and reports; unique.",
    "teachers.provider": "Wire format: openai (also DeepInfra, Together, Groq, vLLM, llama.cpp), gemini, anthropic.",
    "teachers.model": "The provider's model name.",
    "teachers.api_key_env": "Environment variable holding the API key (never the key itself).",
    "teachers.base_url": "Endpoint; default the official one. openai: include /v1. `emulator`: bench's emulator.",
    "teachers.rpm": "Requests per minute the engine keeps to (none: no request limit).",
    "teachers.tpm": "Tokens per minute (prompt estimate + max_tokens at admission, reconciled with usage).",
    "teachers.max_in_flight": "Cap on concurrent calls; shrinks on 429s and grows back (AIMD).",
    "teachers.price_in_per_mtok": "USD per million input tokens; overrides the built-in price table.",
    "teachers.price_out_per_mtok": "USD per million output tokens (reasoning tokens too); overrides the price table.",
    "teachers.price_cached_in_per_mtok": "USD per million cached prompt tokens; default: the table's, else the "
    "input price.",
    "teachers.price_cache_write_per_mtok": "USD per million prompt tokens written to Anthropic's cache; as above.",
    "teachers.temperature": "Sampling temperature (paper: 0.8, the default where the model takes it); an error on "
    "models that refuse it (o-series, GPT-5, Claude while thinking).",
    "teachers.top_p": "Nucleus sampling (paper: 1.0, the default where the model takes it); refused like temperature.",
    "teachers.max_tokens": "Visible-answer token cap per call (paper: 512); a thinking budget is added on top.",
    "teachers.reasoning": "low, medium, high, a thinking budget in tokens, or off; unset: the capability table's "
    "default (core/capabilities.py). An error on a model without reasoning.",
    "teachers.reasoning_tokens_estimate": "Thinking tokens per call the dry run expects; default from the "
    "capability table for the effort.",
    "teachers.accepts_sampling": "Override: whether the model takes temperature/top_p.",
    "teachers.max_tokens_field": "Override: max_tokens or max_completion_tokens (openai).",
    "teachers.reasoning_control": "Override: none, effort (reasoning_effort) or budget (thinking budget).",
    "teachers.min_thinking_budget": "Override: the smallest thinking budget the model takes.",
    "teachers.timeout_s": "Per-attempt timeout.",
    "teachers.max_attempts": "Attempts before a call is recorded as failed (a rerun retries it).",
    "datasets.grader": "`committee` (tasks/answers.py: answer phrases, numeric comparison) or `authors` (the FAIR "
    "authors' extraction and string comparison, to compare with the paper like for like).",
    "datasets.answer.type": "`number` (one number; units, $, %, thousands separators), `boolean` (true/false, "
    "yes/no), `choice` (an option letter, or the option's text), `exact` (normalised text), `math` (LaTeX, "
    "`\\boxed{}`, compared symbolically with math-verify).",
    "datasets.answer.grader": "`module:function` deciding correctness instead: called as `f(reply, gold, options)`, "
    "returns a bool or a score; imported when the config loads. `type` still reads gold and final answers.",
    "datasets.answer.pass_score": "A grader's numeric score counts as correct from this value up (default 0.5).",
    "datasets.answer.tolerance": "number: absolute tolerance (default 1e-4, the paper tasks').",
    "datasets.answer.relative_tolerance": "number: tolerance as a share of the gold's size (default 0).",
    "datasets.answer.true_words": "boolean: more words read as true, beside true and yes (e.g. `supported`).",
    "datasets.answer.false_words": "boolean: more words read as false, beside false and no (e.g. `refuted`).",
    "datasets.answer.n_options": "choice: options per question (letters A..); unset: as many as each question lists.",
    "datasets.answer.case_sensitive": "exact: compare case too (default false).",
    "datasets.answer.ignore_punctuation": "exact: drop punctuation before comparing (default true).",
    "datasets.answer.ignore_articles": "exact: drop a/an/the before comparing (default true).",
    "datasets.answer.pattern": "exact: a regex finding the answer in a reply (its one group, else the match; the "
    "last match wins); unset: the last box, answer phrase or line.",
    "teachers.system_message": "Send the prompt set's `teacher_system` message first (the authors did so for GPT "
    "only).",
    "teachers.host": "openai wire only: who serves it, `openai` (default), `azure`, `openrouter`, `vllm`, `llamacpp`, "
    "`together`, `groq`, `deepinfra` or `compatible` (any other OpenAI-compatible server); sets the URL, auth header "
    "and rate-limit headers.",
    "teachers.api_version": "host `azure`: the `api-version` query parameter, e.g. `2024-10-21`.",
    "teachers.deployment": "host `azure`: the deployment name in the URL path (`base_url` is the resource endpoint).",
    "teachers.site_url": "host `openrouter`: sent as `HTTP-Referer` (optional app attribution).",
    "teachers.site_title": "host `openrouter`: sent as `X-Title` (optional app attribution).",
    "teachers.mode": "`batch`: send this teacher's calls through its provider's Batch API (OpenAI, Anthropic, "
    "Gemini; half price, results within 24 hours); `sync`: one call at a time through the rate-limited lane.",
    "teachers.fallback": "mode `batch`: a request still failing after `max_attempts` batches is given up "
    "(`none`) or sent through the sync lane (`sync`).",
    "teachers.batch_window_s": "mode `batch`: how long a batch's first request waits for more before the batch "
    "is submitted (a full batch goes at once).",
    "teachers.batch_poll_s": "mode `batch`: seconds between polls of a submitted batch.",
    "teachers.batch_max_requests": "mode `batch`: requests per batch at most (unset: the provider's limit).",
    "teachers.batch_expected_hours": "mode `batch`: hours a batch is expected to take, for `--dry-run`'s wall "
    "time (providers promise 24 at most).",
    "review.strict": "Accept only a mean strictly above `threshold` (the authors' code: `threshold = 3`, "
    "`strict = true`, i.e. mean > 3).",
    "review.peer_review": "false: the committee without peer review (every rationale accepted, no review calls).",
    "review.single_teacher": "A teacher's name: that teacher alone, without review (the authors' `--teacher X`).",
    "review.threshold": "Accept a rationale when the mean of its valid peer scores is >= this (paper 4.0; "
    "the authors' code: 3 with `strict`).",
    "review.skip_decided": "Skip reviews whose score can no longer change the decision (reviews then go one by one).",
    "review.skip_wrong_answer": "Reject, without reviews, rationales whose final answer disagrees with the gold one.",
    "review.max_usd": "Spending cap: no new call starts once spent + in-flight worst case reaches it.",
    "review.keep_all_accepted": "train.jsonl keeps every accepted rationale instead of one random pick per sample.",
    "review.samples_in_flight": "Samples worked on at once (bounds memory; the lanes bound throughput).",
    "review.structured": "Ask for review scores through each provider's structured output (OpenAI "
    "`response_format` JSON schema, Gemini `responseSchema`, Anthropic a forced tool) instead of the paper's "
    "bracketed score in free text.",
    "student.model": "A model directory, a hub id, or `smollm2-135m-instruct` (the PyPI GGUF, converted once).",
    "student.backend": "vllm, hf or openai; default vllm where CUDA and vllm are present, else hf.",
    "student.batch_size": "Questions generated together (hf) or in flight (openai).",
    "student.temperature": "Exam/eval sampling (paper: 0.3).",
    "student.top_p": "Exam/eval sampling (paper: 0.9).",
    "student.top_k": "Exam/eval sampling (paper: 50).",
    "student.max_new_tokens": "Exam/eval answer length cap (paper: 512).",
    "student.greedy": "Greedy decoding instead of sampling.",
    "student.prompt_format": "`chat` (the tokenizer's template), `instruction` (the paper's ### layout), or "
    "`auto` (chat when the tokenizer has a template); used at exam, training and eval alike.",
    "student.dtype": "Weights dtype for generation; auto = bf16 on CUDA, fp32 on CPU.",
    "student.tensor_parallel_size": "vllm: GPUs per model.",
    "student.gpu_memory_utilization": "vllm: share of GPU memory to use.",
    "student.max_model_len": "vllm: context length.",
    "student.base_url": "openai backend: the server serving the student (e.g. `vllm serve`).",
    "student.api_key_env": "openai backend: environment variable with its key.",
    "student.rpm": "openai backend: request rate limit.",
    "student.max_in_flight": "openai backend: concurrent requests.",
    "train.epochs": "Epochs (paper: 10).",
    "train.max_steps": "Optimizer steps; overrides epochs (for short runs).",
    "train.micro_batch_size": "Samples per micro-batch per process (paper: 8); each gives two sequences.",
    "train.grad_accum": "Gradient accumulation steps (paper: 2).",
    "train.lr": "Peak learning rate, AdamW (paper: 1e-5).",
    "train.weight_decay": "AdamW weight decay of the weight matrices (the authors' runs: 0.01).",
    "train.warmup_ratio": "Linear warmup share of the steps, then `lr_schedule` (paper: 0.03).",
    "train.lr_schedule": "After warmup: `constant` (the authors' runs), `linear` decay to 0, or `cosine` to 0.",
    "train.truncation_side": "`left`: cut the prompt's head and keep the response; `right`: cut the sequence's "
    "tail at max_length (the authors' data.py).",
    "train.per_dataset": "One student per benchmark (the paper): `out_dir/models/<task>/`, each trained on its "
    "own records and evaluated on its own test split.",
    "train.max_length": "Tokens per sequence, cut as `truncation_side` says (paper: 512).",
    "train.max_grad_norm": "Gradient clipping (paper: 0.3).",
    "train.alpha": "Loss weight: alpha * CE(feedback) + (1 - alpha) * CE(rationale) (paper: 0.5).",
    "train.zero_stage": "DeepSpeed ZeRO stage 0-3.",
    "train.offload_optimizer": "Optimizer state on CPU (DeepSpeedCPUAdam); ZeRO 1-3.",
    "train.offload_params": "Parameters on CPU; ZeRO 3.",
    "train.precision": "bf16, fp16, fp32, or auto (bf16 on CUDA, fp32 on CPU).",
    "train.gradient_checkpointing": "Recompute activations to save memory.",
    "train.attn_implementation": "flash_attention_2, sdpa, eager, or auto (flash-attn when installed on CUDA).",
    "train.save_every_steps": "DeepSpeed checkpoint every N steps (and at each epoch end).",
    "train.num_processes": "Processes (GPUs); more than 1 starts the launcher for you.",
    "train.launcher": "torchrun or deepspeed (multi-node: deepspeed with a hostfile).",
    "train.hostfile": "deepspeed launcher hostfile for multi-node runs.",
    "train.deepspeed_config": "A DeepSpeed JSON whose keys override the generated config.",
    "train.lora": "LoRA adapters instead of full fine-tuning; see `[train.lora]`.",
    "train.quantization": "`4bit` loads the frozen base in 4-bit NF4 (QLoRA; needs `[train.lora]`, CUDA and "
    "bitsandbytes).",
    "train.lora.r": "Adapter rank.",
    "train.lora.alpha": "LoRA scaling numerator (the update is scaled by alpha / r).",
    "train.lora.dropout": "Dropout on the adapters' input.",
    "train.lora.target_modules": "Leaf names of the linear layers to adapt (a name that matches nothing is an error "
    "listing the model's).",
    "train.lora.merge": "Also save the merged model: `model/` then holds full weights and `model/adapter/` the "
    "adapter; otherwise `model/` is the adapter alone.",
    "dpo.enabled": "Run the `dpo` stage after training in `--stage all` (`--stage dpo` runs it anyway).",
    "dpo.min_margin": "A pair needs chosen mean score - rejected mean score >= this (and > 0).",
    "dpo.beta": "DPO temperature: how far the policy may move from the reference (TRL's default 0.1).",
    "dpo.lr": "Peak learning rate of the DPO stage.",
    "dpo.epochs": "Epochs over preferences.jsonl.",
    "dpo.max_steps": "Optimizer steps; overrides epochs.",
    "dpo.micro_batch_size": "Pairs per micro-batch per process; each gives two sequences.",
    "dpo.grad_accum": "Gradient accumulation steps.",
    "dpo.warmup_ratio": "Linear warmup share of the steps, then linear decay.",
    "hub.export_dataset": "Write `out_dir/hf_dataset/` (a `datasets` DatasetDict with a dataset card) at the report "
    "stage; needs `pip install datasets`.",
    "hub.push": "Push the dataset (`dataset_repo`) and the trained model (`model_repo`) at the report stage; "
    "untested here (no Hub access).",
    "hub.dataset_repo": "Hub repo id of the dataset, e.g. `me/committee-svamp`.",
    "hub.model_repo": "Hub repo id of the trained student (`out_dir/model`).",
    "hub.token_env": "Environment variable holding the Hub token (never the token itself).",
    "hub.private": "Create the Hub repos private.",
    "hub.license": "Licence id for both cards; default: the sources' licence where they all share one, else `other`.",
    "emulator.answers": "`fair` (scripted teachers), `echo`, a JSONL of canned answers, or `module:function`.",
    "emulator.latency_ms": "Median latency per call.",
    "emulator.latency_sigma": "Lognormal sigma of the latency (0: fixed).",
    "emulator.ms_per_output_token": "Extra latency per output token.",
    "emulator.seed": "Seed of latencies and scripted answers.",
    "emulator.forget_brackets": "Per teacher model, the share of its scripted free-text reviews that forget the "
    'brackets and write the score as a word (`{"gpt-x" = 0.2}`).',
}


def _fields(struct: type) -> tuple[msgspec.inspect.Field, ...]:
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType), struct
    return info.fields


def _type_name(field: msgspec.inspect.Field) -> str:
    t = field.type
    if isinstance(t, msgspec.inspect.UnionType):
        parts = [_plain(x) for x in t.types]
        return " \\| ".join(parts)
    return _plain(t)


def _plain(t: msgspec.inspect.Type) -> str:
    if isinstance(t, msgspec.inspect.VarTupleType):
        return f"list of {_plain(t.item_type)}"
    if isinstance(t, msgspec.inspect.LiteralType):
        return " \\| ".join(f"`{v}`" for v in t.values)
    return {
        msgspec.inspect.StrType: "str",
        msgspec.inspect.IntType: "int",
        msgspec.inspect.FloatType: "float",
        msgspec.inspect.BoolType: "bool",
        msgspec.inspect.NoneType: "none",
        msgspec.inspect.StructType: "table",
    }.get(type(t), type(t).__name__.removesuffix("Type").lower())


def _default(field: msgspec.inspect.Field) -> str:
    if field.required:
        return "required"
    value = field.default
    if isinstance(value, tuple):
        return "`" + json.dumps(list(value)) + "`"  # as the TOML array would be written
    return "none" if value is None else f"`{value}`"


def reference_markdown() -> str:
    """Markdown tables of every config key: type, default, meaning."""
    out = []
    for title, struct, blurb in SECTIONS:
        key = title.strip("[]")
        out.append(f"**`{title}`** {blurb}\n\n| key | type | default | meaning |\n|---|---|---|---|")
        for field in _fields(struct):
            desc = DESCRIPTIONS[f"{key}.{field.name}"]
            out.append(f"| `{field.name}` | {_type_name(field)} | {_default(field)} | {desc} |")
        out.append("")
    return "\n".join(out)


def config_keys() -> set[str]:
    """Every `section.key` of the schema."""
    return {f"{t.strip('[]')}.{f.name}" for t, s, _ in SECTIONS for f in _fields(s)}


if __name__ == "__main__":
    print(reference_markdown())
