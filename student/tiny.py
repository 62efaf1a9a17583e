"""A tiny random Llama with a locally trained tokenizer, for fast tests and smoke runs.

Nothing is downloaded: the byte-level BPE tokenizer is trained on a few lines of
text in memory, and the weights are random. The directory it writes loads with
plain `from_pretrained`, like any real student.
"""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "The answer is 42. Reason step by step. Question: how many apples are left?",
    "### Instruction: Solve the problem. ### Input: Tom has 3 apples. ### Response:",
    "The student's answer is wrong because 5 + 7 = 12, not 13. The answer is true. (B) false",
    "0 1 2 3 4 5 6 7 8 9 + - * / = $ % . , ? ! ( ) [ ] : ; ' \" \n",
]


def build_tiny_model(out_dir: str | Path, *, layers: int = 2, hidden: int = 64, seed: int = 0) -> Path:
    """Write a tiny random LlamaForCausalLM + tokenizer (ChatML template) to `out_dir`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    raw.train_from_iterator(_CORPUS, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tok.chat_template = CHATML

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        # transformers serves every special-token id through an untyped __getattr__: a single id each here.
        bos_token_id=tok.bos_token_id,  # pyright: ignore[reportArgumentType]
        eos_token_id=tok.eos_token_id,  # pyright: ignore[reportArgumentType]
        pad_token_id=tok.pad_token_id,  # pyright: ignore[reportArgumentType]
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
