"""The point-wise data format: validation and normalisation of rows to ``prompt``, ``completion``, ``score``.

Accepted rows (standard text or conversational messages, extra columns ignored):
    point-wise  ``prompt`` + ``completion`` + exactly one of ``label`` (bool or 0/1) or ``score`` (float)
    paired      ``chosen`` + ``rejected`` with an explicit ``prompt`` or an implicit one (their shared prefix);
                each pair becomes two rows, chosen with label 1 and rejected with label 0

Bad rows raise a ValueError naming the row, the column and a fix: nothing is silently dropped or turned into NaN.

Converters from other feedback formats to point-wise rows: `pairwise_to_pointwise` (DPO pairs), `hh_to_pointwise` /
`hh_to_pairwise` (raw Anthropic HH transcripts), `ratings_to_scores` (bounded rating scales), `kto_to_pointwise`
(KTO / LlamaFactory ``messages`` + ``label`` rows) and `mix_demonstrations` (ULMA's demonstrations + preferences).
"""

import json
import logging
import math
import random
import re
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, IterableDataset, concatenate_datasets, load_dataset, load_from_disk
from trl.data_utils import extract_prompt, is_conversational, unpair_preference_dataset


logger = logging.getLogger(__name__)


DATA_FORMATS = ("auto", "pointwise", "pairwise", "hh", "kto")
POINTWISE_FORMAT_HELP = (
    "Point-wise rows need `prompt`, `completion` and exactly one of `label` (bool or 0/1) or `score` (float); "
    "paired rows need `chosen` and `rejected` (and optionally `prompt`)."
)


def column_names(dataset: Dataset | IterableDataset) -> list[str]:
    """Column names of a dataset, also for an IterableDataset whose features are unknown."""
    if dataset.column_names is not None:
        return list(dataset.column_names)
    return list(next(iter(dataset)).keys())


def infer_score_type(columns: list[str]) -> str:
    """``continuous`` for a ``score`` column, ``binary`` for a ``label`` column or paired rows."""
    return "continuous" if "score" in columns and "label" not in columns else "binary"


def _is_empty(text: Any) -> bool:
    if isinstance(text, str):
        return not text.strip()
    if isinstance(text, list):  # conversational: a list of messages
        return all(not str(message.get("content") or "").strip() for message in text)
    return text is None


def _fail(index: int, column: str, problem: str, fix: str) -> None:
    raise ValueError(f"Row {index}, column `{column}`: {problem}. {fix}")


def _check_text(example: dict[str, Any], index: int, column: str) -> None:
    value = example[column]
    if not isinstance(value, (str, list)):
        _fail(index, column, f"expected a string or a list of messages, got {type(value).__name__}", POINTWISE_FORMAT_HELP)
    if _is_empty(value):
        _fail(index, column, "the completion is empty", "Drop the row or give it a completion.")


def _check_label(value: Any, index: int, column: str = "label") -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    _fail(
        index,
        column,
        f"labels must be True/False or 0/1, got {value!r}",
        "Map the label to 0/1, or put graded values in a float `score` column instead.",
    )


def _label_to_score(value: Any, index: int) -> float:
    return float(_check_label(value, index))


def _check_score(value: Any, index: int, score_type: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(index, "score", f"scores must be real numbers, got {value!r}", "Convert the column to float.")
    if not math.isfinite(value):
        _fail(index, "score", f"the score is {value}", "Scores must be finite: fix the value or drop the row.")
    if score_type == "binary" and not 0.0 <= value <= 1.0:
        _fail(
            index,
            "score",
            f"binary scores are probabilities in [0, 1], got {value}",
            'Rescale the scores to [0, 1] or set `score_type="continuous"`.',
        )
    return float(value)


def _normalise_pointwise(example: dict[str, Any], index: int, score_type: str, label_column: str) -> dict[str, Any]:
    _check_text(example, index, "completion")
    if label_column == "label":
        return {"score": _label_to_score(example["label"], index)}
    return {"score": _check_score(example["score"], index, score_type)}


def _check_pair(example: dict[str, Any], index: int) -> None:
    for column in ("chosen", "rejected"):
        value = example[column]
        if not isinstance(value, (str, list)) or _is_empty(value):
            _fail(index, column, "the completion is empty or not text", "Drop the pair or fill in both completions.")


def _extract_prompt_checked(example: dict[str, Any], index: int) -> dict[str, Any]:
    chosen, rejected = example["chosen"], example["rejected"]
    shorter = min(len(chosen), len(rejected))
    if chosen[:shorter] == rejected[:shorter]:  # `extract_prompt` would cut the prompt inside the shorter one
        _fail(
            index,
            "chosen",
            "`chosen` and `rejected` are identical or one is a prefix of the other, so their shared prefix is no "
            "prompt",
            "Give the prompt explicitly in a `prompt` column, or drop the pair.",
        )
    return extract_prompt(example)


def pairwise_to_pointwise(dataset: Dataset | IterableDataset, **map_kwargs) -> Dataset | IterableDataset:
    """DPO pairs (``chosen``, ``rejected``, explicit or implicit ``prompt``) to point-wise ``prompt``, ``completion``,
    ``label`` rows: chosen -> True, rejected -> False.

    Standard or conversational. Without a ``prompt`` column the prompt is the longest shared prefix of the two
    completions (`trl.data_utils.extract_prompt`: whole messages, or characters for plain text). Extra columns are
    copied to both rows. Within each `map` batch, the chosen rows come first, then the rejected ones (as in TRL).
    ``map_kwargs`` go to `Dataset.map` (e.g. ``num_proc``).
    """
    columns = column_names(dataset)
    if "chosen" not in columns or "rejected" not in columns:
        raise ValueError(f"Paired rows need `chosen` and `rejected` columns (columns: {columns}).")
    for ambiguous in ("completion", "label", "score"):
        if ambiguous in columns:
            raise ValueError(
                f"The dataset has paired columns `chosen`/`rejected` and a `{ambiguous}` column, so it is unclear "
                f"which to train on. Remove or rename `{ambiguous}`, or drop `chosen`/`rejected`."
            )
    dataset = dataset.map(_check_pair, with_indices=True, **map_kwargs)
    if "prompt" not in columns:
        dataset = dataset.map(_extract_prompt_checked, with_indices=True, **map_kwargs)
    return unpair_preference_dataset(dataset, **map_kwargs)


def to_pointwise(
    dataset: Dataset | IterableDataset, score_type: str, map_kwargs: dict[str, Any] | None = None
) -> Dataset | IterableDataset:
    """Validate rows and return them as ``prompt``, ``completion``, ``score`` (float) plus any extra columns.

    Paired rows are unpaired first (chosen -> 1.0, rejected -> 0.0). Raises ValueError on the first bad row.
    """
    map_kwargs = dict(map_kwargs or {})
    if isinstance(dataset, IterableDataset):
        map_kwargs.pop("num_proc", None)
    if isinstance(dataset, Dataset) and len(dataset) == 0:
        raise ValueError(f"The dataset has no rows. {POINTWISE_FORMAT_HELP}")
    columns = column_names(dataset)

    if "chosen" in columns and "rejected" in columns:
        dataset = pairwise_to_pointwise(dataset, **map_kwargs)
        columns = column_names(dataset)

    for required in ("prompt", "completion"):
        if required not in columns:
            raise ValueError(f"The dataset has no `{required}` column (columns: {columns}). {POINTWISE_FORMAT_HELP}")
    present = [c for c in ("label", "score") if c in columns]
    if len(present) != 1:
        problem = "has both `label` and `score`" if present else "has neither a `label` nor a `score` column"
        raise ValueError(f"The dataset {problem} (columns: {columns}). {POINTWISE_FORMAT_HELP}")

    label_column = present[0]
    return dataset.map(
        _normalise_pointwise,
        with_indices=True,
        fn_kwargs={"score_type": score_type, "label_column": label_column},
        remove_columns=["label"] if label_column == "label" else None,
        **map_kwargs,
    )


# ----------------------------------------------------------------------------------------------------------------
# Anthropic HH transcripts
# ----------------------------------------------------------------------------------------------------------------
_HH_TURN = re.compile(r"(?:\A\s*|\n\n)(Human|Assistant):")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}
_HH_HELP = 'HH transcripts look like "\\n\\nHuman: ...\\n\\nAssistant: ..." and end with an assistant turn.'


def _hh_messages(text: Any, index: int, column: str) -> list[dict[str, str]]:
    """Parse one transcript into messages; consecutive turns of one speaker (an HH artefact) become one message."""
    if not isinstance(text, str):
        _fail(
            index,
            column,
            f"expected a raw HH transcript string, got {type(text).__name__}",
            "For rows that are already messages, use `pairwise_to_pointwise`.",
        )
    pieces = _HH_TURN.split(text)
    if len(pieces) < 3 or pieces[0].strip():
        _fail(index, column, f"not an HH transcript (it starts {text[:40]!r})", _HH_HELP)
    messages = []
    for speaker, content in zip(pieces[1::2], pieces[2::2], strict=True):
        role, content = _HH_ROLES[speaker], content.strip()
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] = "\n\n".join(part for part in (messages[-1]["content"], content) if part)
        else:
            messages.append({"role": role, "content": content})
    return messages


def _split_hh(text: Any, index: int, column: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    messages = _hh_messages(text, index, column)
    if len(messages) < 2 or messages[-1]["role"] != "assistant":
        _fail(index, column, "the transcript does not end with an assistant turn that follows the dialogue", _HH_HELP)
    if not messages[-1]["content"]:
        _fail(
            index,
            column,
            "the last assistant turn is empty",
            "Drop the pair (`drop_invalid=True` drops such pairs) or fill in the response.",
        )
    return messages[:-1], messages[-1:]


def _hh_pair(example: dict[str, Any], index: int) -> dict[str, Any]:
    prompt, chosen = _split_hh(example["chosen"], index, "chosen")
    rejected_prompt, rejected = _split_hh(example["rejected"], index, "rejected")
    if rejected_prompt != prompt:
        common = min(len(prompt), len(rejected_prompt))
        differs_at = next((i for i in range(common) if prompt[i] != rejected_prompt[i]), common)
        _fail(
            index,
            "rejected",
            f"the dialogue before the last assistant turn differs from `chosen`'s from message {differs_at} on, so "
            "the pair does not answer the same prompt",
            "Fix or drop the pair (`drop_invalid=True` drops such pairs).",
        )
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def hh_to_pairwise(dataset: Dataset, drop_invalid: bool = False) -> Dataset:
    """Raw Anthropic HH rows (``chosen``/``rejected`` transcripts) to conversational ``prompt``, ``chosen``,
    ``rejected``.

    Each transcript is split at its last assistant turn: the turns before it become the ``prompt`` messages (roles
    ``user``/``assistant``), the turn itself the one ``assistant`` message of ``chosen`` / ``rejected``. Contents are
    stripped. Consecutive turns of one speaker (a few HH transcripts repeat ``\\n\\nAssistant:`` within a turn) are
    merged into one message, so roles alternate as chat templates expect.

    A pair whose transcripts do not parse, whose last assistant turn is empty, or whose two dialogues differ before
    the last assistant turn raises a ValueError naming the row; with ``drop_invalid=True`` such pairs are dropped
    instead and counted in a warning.
    """
    columns = column_names(dataset)
    if "chosen" not in columns or "rejected" not in columns:
        raise ValueError(f"HH rows need `chosen` and `rejected` transcript columns (columns: {columns}). {_HH_HELP}")
    if drop_invalid:
        problems = {}
        for index, example in enumerate(dataset.select_columns(["chosen", "rejected"])):
            try:
                _hh_pair(example, index)
            except ValueError as error:
                problems[index] = str(error)
        if problems:
            logger.warning(f"Dropped {len(problems)} invalid HH pairs; the first: {next(iter(problems.values()))}")
            dataset = dataset.select([index for index in range(len(dataset)) if index not in problems])
    return dataset.map(_hh_pair, with_indices=True)


def hh_to_pointwise(dataset: Dataset, drop_invalid: bool = False) -> Dataset:
    """Raw Anthropic HH rows to conversational point-wise rows: `hh_to_pairwise`, then `pairwise_to_pointwise`
    (chosen -> ``label`` True, rejected -> False, both with the shared ``prompt``)."""
    return pairwise_to_pointwise(hh_to_pairwise(dataset, drop_invalid=drop_invalid))


# ----------------------------------------------------------------------------------------------------------------
# Ratings
# ----------------------------------------------------------------------------------------------------------------
def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def ratings_to_scores(
    dataset: Dataset,
    rating_column: str,
    scale: tuple[float, float],
    higher_is_better: bool = True,
    positive_at: float | None = None,
    score_column: str = "score",
) -> Dataset:
    """Map ratings on a bounded scale ``(low, high)`` to scores in [0, 1], linearly, the best end scoring 1.0.

    ``score = (rating - low) / (high - low)``, or ``(high - rating) / (high - low)`` with ``higher_is_better=False``
    (e.g. a 0-4 harmfulness rating). With ``positive_at``, ratings at or beyond it in the better direction score
    exactly 1.0, so the trainers count them as positives (``score >= positive_threshold``, default 1.0). For example
    1-5 stars with ``positive_at=4``: 1 -> 0.0, 2 -> 0.25, 3 -> 0.5, 4 and 5 -> 1.0.

    The rating column is replaced by ``score_column``. Ratings that are not finite numbers inside the scale raise a
    ValueError naming the row.
    """
    columns = column_names(dataset)
    if rating_column not in columns:
        raise ValueError(f"No rating column `{rating_column}` (columns: {columns}). Pass the right `rating_column`.")
    if score_column in columns and score_column != rating_column:
        raise ValueError(f"The dataset already has a `{score_column}` column. Drop it or pass another `score_column`.")
    if score_column == "score" and "label" in columns and rating_column != "label":
        raise ValueError(
            "The dataset has a `label` column, and the trainers need exactly one of `label` or `score`. Drop or "
            "rename `label`."
        )
    if (
        not isinstance(scale, (tuple, list))
        or len(scale) != 2
        or not all(_is_real(end) and math.isfinite(end) for end in scale)
        or not scale[0] < scale[1]
    ):
        raise ValueError(f"`scale` must be (low, high) with finite low < high, got {scale!r}.")
    low, high = scale
    if positive_at is not None and not (_is_real(positive_at) and low <= positive_at <= high):
        raise ValueError(f"`positive_at` must be a rating inside the scale {tuple(scale)}, got {positive_at!r}.")

    def to_score(example: dict[str, Any], index: int) -> dict[str, float]:
        rating = example[rating_column]
        if not _is_real(rating) or not math.isfinite(rating) or not low <= rating <= high:
            _fail(
                index,
                rating_column,
                f"the rating {rating!r} is not a number inside the scale {tuple(scale)}",
                "Fix or drop the row, or widen `scale`.",
            )
        if positive_at is not None and (rating >= positive_at if higher_is_better else rating <= positive_at):
            return {score_column: 1.0}
        return {score_column: ((rating - low) if higher_is_better else (high - rating)) / (high - low)}

    return dataset.map(
        to_score,
        with_indices=True,
        remove_columns=[rating_column] if rating_column != score_column else None,
    )


# ----------------------------------------------------------------------------------------------------------------
# Conversations: KTO rows and demonstrations
# ----------------------------------------------------------------------------------------------------------------
_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "system": "system"}


def _messages_column(columns: list[str], what: str) -> str:
    for column in ("messages", "conversations"):
        if column in columns:
            return column
    raise ValueError(
        f"{what} need a `messages` (or ShareGPT `conversations`) column of messages (columns: {columns})."
    )


def _chatml(messages: Any, index: int, column: str) -> list[dict[str, str]]:
    """Messages with ``role``/``content`` (or ShareGPT ``from``/``value``, roles human/gpt) in ChatML form."""
    if not isinstance(messages, list) or not messages:
        _fail(index, column, "expected a non-empty list of messages", "Give each row its conversation.")
    converted = []
    for message in messages:
        role = (message.get("role") or message.get("from")) if isinstance(message, dict) else None
        content = (message.get("content") or message.get("value") or "") if isinstance(message, dict) else None
        if role not in _ROLES or not isinstance(content, str):
            _fail(
                index,
                column,
                f"unsupported message {message!r}",
                "Messages need `role`/`content` (or `from`/`value`) with role user, assistant or system (or human, "
                "gpt).",
            )
        converted.append({"role": _ROLES[role], "content": content})
    return converted


def _split_conversation(messages: Any, index: int, column: str) -> dict[str, list[dict[str, str]]]:
    """A conversation as ``prompt`` (every message but the last) + ``completion`` (the last, the assistant's)."""
    messages = _chatml(messages, index, column)
    if messages[-1]["role"] != "assistant":
        _fail(
            index,
            column,
            f"the last message is the {messages[-1]['role']}'s, not the assistant's",
            "End each conversation with the assistant reply to train on.",
        )
    if len(messages) < 2:
        _fail(index, column, "there is no prompt before the assistant reply", "Add the user message it answers.")
    if not messages[-1]["content"].strip():
        _fail(index, column, "the assistant reply is empty", "Drop the row or fill in the reply.")
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def kto_to_pointwise(dataset: Dataset) -> Dataset:
    """KTO-style rows to conversational point-wise ``prompt``, ``completion``, ``label`` rows.

    Input: a ``messages`` (or ShareGPT ``conversations``) column whose last message is the assistant reply, with
    ``role``/``content`` or ``from``/``value`` keys (roles user/human, assistant/gpt, system), and a ``label`` (or
    LlamaFactory ``kto_tag``) column of True/False or 0/1. The reply becomes the ``completion``, the messages before it
    the ``prompt``; other columns are kept.
    """
    columns = column_names(dataset)
    messages_column = _messages_column(columns, "KTO rows")
    label_columns = [column for column in ("label", "kto_tag") if column in columns]
    if len(label_columns) != 1:
        raise ValueError(
            f"KTO rows need exactly one of a `label` or a `kto_tag` column (columns: {columns}). Keep one of them."
        )
    label_column = label_columns[0]

    def convert(example: dict[str, Any], index: int) -> dict[str, Any]:
        row = _split_conversation(example[messages_column], index, messages_column)
        return row | {"label": _check_label(example[label_column], index, label_column)}

    stale = [messages_column] + ([label_column] if label_column != "label" else [])
    return dataset.map(convert, with_indices=True, remove_columns=stale)


def _demonstrations_to_pointwise(demonstrations: Dataset) -> Dataset:
    columns = column_names(demonstrations)
    for feedback in ("label", "score"):
        if feedback in columns:
            raise ValueError(
                f"The demonstrations have a `{feedback}` column, but demonstrations are unlabelled SFT rows. Drop "
                f"it, or pass these rows as `preferences`."
            )
    if "prompt" in columns and "completion" in columns:
        return demonstrations.map(lambda example, index: _check_text(example, index, "completion"), with_indices=True)
    column = _messages_column(columns, "Demonstrations without `prompt` and `completion` columns")
    return demonstrations.map(
        lambda example, index: _split_conversation(example[column], index, column),
        with_indices=True,
        remove_columns=[column],
    )


def mix_demonstrations(
    demonstrations: Dataset, preferences: Dataset, ratio: float | None = None, seed: int = 0
) -> Dataset:
    """ULMA's unified training set: demonstrations (SFT rows) as positives, plus point-wise preferences.

    Demonstrations are ``prompt`` + ``completion`` rows, or ``messages`` (or ShareGPT ``conversations``) whose last
    message is the assistant's. They become positives: ``label`` True, or ``score`` 1.0 (the default
    ``positive_threshold``) when the preferences have a ``score`` column. ``preferences`` are point-wise rows
    (``prompt``, ``completion`` and one of ``label`` / ``score``, e.g. from the other converters).

    ``ratio`` is the number of demonstration rows per preference row in the result: ``round(ratio *
    len(preferences))`` demonstrations, sampled without replacement, or every demonstration repeated and the rest
    sampled when more are needed, deterministically from ``seed``. ``None`` uses every demonstration once.

    Columns that only one side has are dropped; the result holds the demonstrations first, then the preferences
    (the trainers shuffle).
    """
    pref_columns = column_names(preferences)
    feedback = [column for column in ("label", "score") if column in pref_columns]
    if "prompt" not in pref_columns or "completion" not in pref_columns or len(feedback) != 1:
        raise ValueError(
            f"`preferences` must be point-wise: `prompt`, `completion` and exactly one of `label` or `score` "
            f"(columns: {pref_columns}). Convert them first, e.g. with `pairwise_to_pointwise`."
        )
    if len(demonstrations) == 0 or len(preferences) == 0:
        raise ValueError("`demonstrations` and `preferences` both need at least one row.")
    if ratio is not None and not (_is_real(ratio) and math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"`ratio` must be a positive number of demonstrations per preference row, got {ratio!r}.")
    try:
        demonstrations = _demonstrations_to_pointwise(demonstrations)
    except ValueError as error:
        raise ValueError(f"In `demonstrations`: {error}") from None
    if is_conversational(demonstrations[0]) != is_conversational(preferences[0]):
        raise ValueError(
            "The demonstrations and the preferences mix standard text and conversational rows. Convert one side so "
            "both use the same format."
        )

    if ratio is not None:
        wanted = round(ratio * len(preferences))
        if wanted == 0:
            raise ValueError(f"`ratio={ratio}` with {len(preferences)} preference rows selects no demonstration.")
        copies, rest = divmod(wanted, len(demonstrations))
        sampled = sorted(random.Random(seed).sample(range(len(demonstrations)), rest))
        demonstrations = demonstrations.select(list(range(len(demonstrations))) * copies + sampled)

    positive = True if feedback == ["label"] else 1.0
    demonstrations = demonstrations.map(lambda _: {feedback[0]: positive})
    shared = [column for column in pref_columns if column in demonstrations.column_names]
    demonstrations = demonstrations.select_columns(shared).cast(preferences.select_columns(shared).features)
    return concatenate_datasets([demonstrations, preferences.select_columns(shared)])


def prompt_key(prompt: Any) -> str:
    """A hashable key for a prompt, text or messages."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


def split_by_prompt(
    rows: Dataset, eval_prompts: float, seed: int = 0, train_prompts: int | None = None
) -> tuple[Dataset, Dataset]:
    """Train and held-out rows, split by prompt so that no prompt is in both.

    ``eval_prompts`` is a number of prompts, or a fraction of them if < 1; ``train_prompts`` caps the training
    prompts (default: all the others). Prompts are drawn at random with ``seed``.
    """
    keys = [prompt_key(prompt) for prompt in rows["prompt"]]
    unique = sorted(set(keys))
    random.Random(seed).shuffle(unique)
    n_eval = round(eval_prompts * len(unique)) if 0 < eval_prompts < 1 else int(eval_prompts)
    if not 0 < n_eval < len(unique):
        raise ValueError(
            f"`eval_prompts={eval_prompts}` must leave held-out and training prompts ({len(unique)} in all)."
        )
    held_out = set(unique[:n_eval])
    train = set(unique[n_eval:] if train_prompts is None else unique[n_eval : n_eval + train_prompts])
    return (
        rows.select([i for i, key in enumerate(keys) if key in train]),
        rows.select([i for i, key in enumerate(keys) if key in held_out]),
    )


# ----------------------------------------------------------------------------------------------------------------
# Loading and format detection
# ----------------------------------------------------------------------------------------------------------------
_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}


def load_data(name: str, config: str | None = None) -> DatasetDict:
    """A `DatasetDict` from a Hub name or a local path: json/jsonl(.gz), parquet, csv, or a `save_to_disk` folder."""
    path = Path(name)
    if path.is_dir() and any((path / marker).exists() for marker in ("dataset_info.json", "dataset_dict.json")):
        loaded = load_from_disk(str(path))
        return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})
    if path.is_file():
        suffixes = [s for s in path.suffixes if s != ".gz"]
        if not suffixes or suffixes[-1] not in _FILE_BUILDERS:
            raise ValueError(f"Cannot read {name}: use .json, .jsonl, .jsonl.gz, .parquet, .csv or .arrow.")
        return load_dataset(_FILE_BUILDERS[suffixes[-1]], data_files=str(path))
    if isinstance(loaded := load_dataset(name, name=config), Dataset):
        return DatasetDict({"train": loaded})
    return loaded


def detect_format(dataset: Dataset) -> str:
    """The format of a dataset: ``hh`` (raw Anthropic HH transcripts), ``pairwise``, ``kto`` or ``pointwise``."""
    columns = set(dataset.column_names)
    if {"chosen", "rejected"} <= columns:
        first = dataset[0]["chosen"]
        return "hh" if isinstance(first, str) and first.lstrip("\n").startswith("Human:") else "pairwise"
    if columns & {"messages", "conversations"} and columns & {"label", "kto_tag"}:
        return "kto"
    return "pointwise"


def convert_to_pointwise(dataset: Dataset, data_format: str = "auto", drop_invalid: bool = False) -> Dataset:
    """Rows of ``data_format`` (one of `DATA_FORMATS`; ``auto`` detects it) as point-wise rows.

    ``drop_invalid`` applies to HH transcripts (see `hh_to_pairwise`); point-wise rows are returned unchanged.
    """
    if data_format not in DATA_FORMATS:
        raise ValueError(f"Unknown data format {data_format!r}: use one of {list(DATA_FORMATS)}.")
    data_format = detect_format(dataset) if data_format == "auto" else data_format
    if data_format == "hh":
        return hh_to_pointwise(dataset, drop_invalid=drop_invalid)
    if data_format == "kto":
        return kto_to_pointwise(dataset)
    if data_format == "pairwise":
        return pairwise_to_pointwise(dataset)
    return dataset
