"""Point-wise rows to token ids, as the trainers and the evaluation read them: EOS on text completions, the split of
the tokenized text into prompt and completion, and what the length limit and the chat template do to the rows, each
counted and reported rather than done silently.
"""

from typing import Any

from accelerate.logging import get_logger
from datasets import Dataset
from transformers import AutoProcessor, PreTrainedTokenizerBase
from trl.data_utils import _tokenize, common_prefix_length, is_conversational
from trl.trainer.utils import get_config_model_id

from .data import chat_template_arguments


logger = get_logger(__name__)


def text_tokenizer(model, processing_class, args, owner: str) -> PreTrainedTokenizerBase:
    """The trainer's tokenizer: ``processing_class``, else loaded from the model's name (as `DPOTrainer` does), with
    its pad token set as `DPOTrainer` sets it (the deprecated ``pad_token`` option first, else its own, else EOS)."""
    if processing_class is None:
        model_id, revision = model, (args.model_init_kwargs or {}).get("revision")
        if not isinstance(model, str):
            model_id, revision = get_config_model_id(model.config), None
        if not model_id:
            raise ValueError(
                f"{owner}: the model was built in memory, so its tokenizer cannot be loaded from its name: pass "
                "`processing_class=tokenizer`."
            )
        processing_class = AutoProcessor.from_pretrained(
            model_id, revision=revision, trust_remote_code=args.trust_remote_code
        )
    if not isinstance(processing_class, PreTrainedTokenizerBase):
        raise NotImplementedError(f"{owner} supports text tokenizers only, not processors.")
    pad_token = args.pad_token or processing_class.pad_token or processing_class.eos_token
    if pad_token not in processing_class.get_vocab():
        raise ValueError(f"`pad_token={pad_token!r}` is not in the tokenizer's vocabulary: pick one of its tokens.")
    processing_class.pad_token = pad_token
    return processing_class


def add_eos(example: dict[str, Any], eos_token: str) -> dict[str, Any]:
    """A text completion ends with EOS, so the model learns to stop."""
    if not example["completion"].endswith(eos_token):
        example["completion"] = example["completion"] + eos_token
    return example


def tokenize_row(example: dict[str, Any], processing_class) -> dict[str, Any]:
    """Token ids of the prompt and of the completion, split where prompt and prompt + completion diverge (as TRL).

    ``prompt_cut`` counts the prompt's last tokens that prompt + completion does not start with (a chat template that
    renders the last turn differently once a reply follows, e.g. thinking tags): those positions are scored as part
    of the completion. `report_prompt_cuts` warns about them.
    """
    if is_conversational(example):
        template = chat_template_arguments(example)
        prompt_ids = _tokenize(processing_class, example["prompt"], add_generation_prompt=True, **template)
        full_ids = _tokenize(processing_class, example["prompt"] + example["completion"], **template)
    else:
        prompt_ids = _tokenize(processing_class, example["prompt"])
        full_ids = _tokenize(processing_class, example["prompt"] + example["completion"])
    prompt_ids, full_ids = prompt_ids["input_ids"], full_ids["input_ids"]
    prompt_length = common_prefix_length(prompt_ids, full_ids)
    return {
        "prompt_ids": prompt_ids[:prompt_length],
        "completion_ids": full_ids[prompt_length:],
        "prompt_cut": len(prompt_ids) - prompt_length,
    }


def report_prompt_cuts(dataset: Dataset, name: str) -> None:
    """Warn when the tokenized prompt is not a prefix of the tokenized prompt + completion (TRL warns too)."""
    cut = [index for index, tokens in enumerate(dataset["prompt_cut"]) if tokens > 0]
    if cut:
        logger.warning(
            f"{name} dataset: in {len(cut)} of {len(dataset)} rows (first: {cut[:5]}) the tokenized prompt is not a "
            "prefix of the tokenized prompt + completion: the chat template renders the prompt's end differently "
            "once a reply follows (thinking tags, for example), and the tokens from where they diverge are trained "
            "as completion. Use a chat template that renders the prompt the same way in both.",
            main_process_only=True,
        )


def report_lengths(dataset: Dataset, max_length: int | None, truncation_mode: str, name: str) -> None:
    """Warn how many rows `max_length` drops (prompt alone too long, `keep_start`) and how many it truncates."""
    if max_length is None:
        return
    prompt_lengths = [len(ids) for ids in dataset["prompt_ids"]]
    lengths = [p + len(c) for p, c in zip(prompt_lengths, dataset["completion_ids"], strict=True)]
    dropped = sum(p >= max_length for p in prompt_lengths) if truncation_mode == "keep_start" else 0
    cut = sum(length > max_length for length in lengths) - dropped
    if dropped or cut:
        logger.warning(
            f"{name} dataset: of {len(lengths)} rows, {dropped} are dropped because their prompt alone has "
            f">= max_length={max_length} tokens, and {cut} are truncated ({truncation_mode}). Raise `max_length` "
            "or shorten the prompts to keep them whole.",
            main_process_only=True,
        )


class PromptFitsFilter:
    """`filter` predicate: the prompt leaves room for a completion token under ``max_length`` (as TRL).

    On an `IterableDataset` rows stream past and cannot be counted up front: each drop is counted as it happens and
    reported at the 1st, 10th, 100th, ... dropped row.
    """

    def __init__(self, max_length: int, name: str):
        self.max_length, self.name, self.dropped = max_length, name, 0

    def __call__(self, row: dict[str, Any]) -> bool:
        if len(row["prompt_ids"]) < self.max_length:
            return True
        self.dropped += 1
        if str(self.dropped).rstrip("0") == "1":
            logger.warning(
                f"{self.name} dataset (streamed): {self.dropped} row(s) dropped so far because their prompt alone has "
                f">= max_length={self.max_length} tokens. Raise `max_length` or shorten the prompts to keep them."
            )
        return False
