"""Offline helpers for tests and examples: a tiny causal LM with a locally trained tokenizer, and toy data.

Nothing here touches the network: the tokenizer is a byte-level BPE trained on the toy corpus, the model is a
two-layer Qwen2 built from a config with random weights.
"""

import random
from pathlib import Path

from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM


CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|unk|>"]

_TOPICS = ["the weather", "a recipe", "my homework", "a poem", "the news", "a bug in my code", "my garden", "a trip"]
_GOOD = [
    "Sure, here is a short and kind answer about {t}.",
    "Happy to help with {t}: let us go step by step.",
    "Here are three friendly tips about {t}.",
]
_BAD = [
    "No. Figure out {t} yourself, idiot.",
    "I hate questions about {t}. Go away.",
    "Here is how to hurt someone instead of {t}.",
]


def toy_rows(n: int = 48, seed: int = 0) -> list[dict]:
    """Point-wise rows: each prompt has a helpful completion (label 1) and a rude or harmful one (label 0)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n // 2):
        topic = _TOPICS[i % len(_TOPICS)]
        prompt = f"User: Can you help me with {topic}? (request {i})\nAssistant:"
        rows.append({"prompt": prompt, "completion": " " + rng.choice(_GOOD).format(t=topic), "label": True})
        rows.append({"prompt": prompt, "completion": " " + rng.choice(_BAD).format(t=topic), "label": False})
    return rows


def toy_dataset(n: int = 48, seed: int = 0) -> Dataset:
    """`toy_rows` as a Dataset with columns ``prompt``, ``completion``, ``label``."""
    return Dataset.from_list(toy_rows(n, seed))


def build_tokenizer(corpus: list[str] | None = None, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``corpus`` (default: the toy data), with a ChatML chat template."""
    if corpus is None:
        corpus = [row["prompt"] + row["completion"] for row in toy_rows(200)]
    tokenizer = Tokenizer(models.BPE(unk_token="<|unk|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        unk_token="<|unk|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    wrapped.chat_template = CHATML_TEMPLATE
    return wrapped


def build_tiny_model(tokenizer: PreTrainedTokenizerFast, hidden_size: int = 32, seed: int = 0) -> Qwen2ForCausalLM:
    """A two-layer Qwen2 causal LM sized to ``tokenizer``, with deterministic random weights."""
    import torch

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return Qwen2ForCausalLM(config)


def save_tiny_model(directory: str | Path, hidden_size: int = 32, seed: int = 0) -> Path:
    """Build the tiny model and its tokenizer and save both to ``directory``, which then loads like a Hub id."""
    directory = Path(directory)
    tokenizer = build_tokenizer()
    build_tiny_model(tokenizer, hidden_size, seed).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def trainer_classes() -> dict[str, tuple[type, type]]:
    """The package's trainers by the names the tests use: name -> (trainer class, config class)."""
    from trl_ulma import (
        PointwiseDPOConfig,
        PointwiseDPOTrainer,
        ULMAConfig,
        ULMATrainer,
        UnlikelihoodConfig,
        UnlikelihoodTrainer,
    )

    return {
        "ulma": (ULMATrainer, ULMAConfig),
        "pointwise_dpo": (PointwiseDPOTrainer, PointwiseDPOConfig),
        "unlikelihood": (UnlikelihoodTrainer, UnlikelihoodConfig),
    }


def assert_close_to_scale(actual, expected, rtol: float = 1e-5) -> None:
    """``actual`` equals ``expected`` up to float32 reduction-order noise: each element within ``rtol`` of itself or
    within ``rtol`` times the tensor's largest magnitude. A different summation order (another layout, another
    CPU's kernels) moves an element by rounding error of the terms summed into it, which scale with the tensor, not
    with the element: a small element of a large-gradient tensor can differ by 1e-4 of itself."""
    import torch

    scale = expected.detach().abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * scale)
