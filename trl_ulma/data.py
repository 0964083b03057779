"""The point-wise data format: validation and normalisation of rows to ``prompt``, ``completion``, ``score``.

Accepted rows (standard text or conversational messages, extra columns ignored):
    point-wise  ``prompt`` + ``completion`` + exactly one of ``label`` (bool or 0/1) or ``score`` (float)
    paired      ``chosen`` + ``rejected`` with an explicit ``prompt`` or an implicit one (their shared prefix);
                each pair becomes two rows, chosen with label 1 and rejected with label 0

Bad rows raise a ValueError (a `RowError`) naming the row (counted from 0), the column and a fix: nothing is
silently dropped, coerced or turned into NaN. `convert_to_pointwise(..., drop_invalid=True)` drops bad rows instead,
with a warning that counts them by reason.

Converters from other feedback formats to point-wise rows: `pairwise_to_pointwise` (DPO pairs), `hh_to_pointwise` /
`hh_to_pairwise` (raw Anthropic HH transcripts), `sharegpt_to_pairwise` / `alpaca_to_pairwise` (LLaMA-Factory
preference rows), `ratings_to_scores` (bounded rating scales), `kto_to_pointwise` (KTO / LLaMA-Factory ``messages`` +
``label`` rows) and `mix_demonstrations` (ULMA's demonstrations + preferences).
"""

import gzip
import json
import logging
import math
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets import (
    Dataset,
    DatasetDict,
    IterableDataset,
    Json,
    concatenate_datasets,
    load_dataset,
    load_from_disk,
)
from trl.data_utils import extract_prompt, is_conversational, unpair_preference_dataset


logger = logging.getLogger(__name__)


DATA_FORMATS = ("auto", "pointwise", "pairwise", "hh", "sharegpt", "alpaca", "kto")
FORMAT_NAMES = {
    "pointwise": "point-wise rows (prompt, completion, label or score)",
    "pairwise": "DPO pairs (prompt, chosen, rejected)",
    "hh": "Anthropic HH transcripts",
    "sharegpt": "LLaMA-Factory ShareGPT preference rows (conversations, chosen, rejected)",
    "alpaca": "LLaMA-Factory Alpaca preference rows (instruction, input, chosen, rejected)",
    "kto": "KTO rows (messages or conversations, label or kto_tag)",
}
POINTWISE_FORMAT_HELP = (
    "Point-wise rows need `prompt`, `completion` and exactly one of `label` (bool or 0/1) or `score` (float); "
    "paired rows need `chosen` and `rejected` (and optionally `prompt`)."
)
CHAT_ROLES = ("system", "user", "assistant", "tool")
# Per-row arguments of the chat template, as in TRL's DPOTrainer (see `chat_template_arguments`)
CHAT_TEMPLATE_COLUMNS = ("tools", "chat_template_kwargs")
# Columns whose values the converters read: datasets stores one that mixes types as `Json`, coercing "0.5" to 0.5
_TYPED_COLUMNS = (
    "prompt", "completion", "label", "score", "chosen", "rejected", "messages", "conversations", "kto_tag",
    "instruction", "input", "system", "history",
)  # fmt: skip


class RowError(ValueError):
    """A bad row: ``Row <index>, column `<column>`: <problem>. <fix>``."""

    def __init__(self, index: int, column: str, problem: str, fix: str):
        super().__init__(f"Row {index}, column `{column}`: {problem}. {fix}")
        self.index, self.column, self.problem, self.fix = index, column, problem, fix


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


def _describe(value: Any) -> str:
    """A value as an error shows it: missing, a string (quoted, so "0.5" is not read as the number), or its type."""
    if value is None:
        return "no value (the cell is empty)"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return repr(value) if isinstance(value, (bool, int, float)) else f"a {type(value).__name__}"


def _fail(index: int, column: str, problem: str, fix: str) -> None:
    raise RowError(index, column, problem, fix)


def _check_roles(messages: list, index: int, column: str) -> None:
    for position, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in CHAT_ROLES:
            _fail(
                index,
                column,
                f"message {position} has role {role!r}" if isinstance(message, dict) else f"{message!r} is no message",
                f"Messages need a `role` among {', '.join(CHAT_ROLES)}: rename the role or drop the row.",
            )


def _check_text(example: dict[str, Any], index: int, column: str) -> None:
    """A prompt or completion: text or a list of messages with known roles, not empty."""
    value = example[column]
    if not isinstance(value, (str, list)):
        _fail(index, column, f"expected a string or a list of messages, got {_describe(value)}", POINTWISE_FORMAT_HELP)
    if isinstance(value, list):
        _check_roles(value, index, column)
    if _is_empty(value):
        what = "prompt" if column == "prompt" else "completion"
        _fail(index, column, f"the {what} is empty", f"Drop the row or give it a {what}.")


def _check_same_kind(example: dict[str, Any], index: int, columns: tuple[str, ...]) -> None:
    """The texts of a row are all plain text or all messages, as TRL's tokenisation needs."""
    kinds = {column: isinstance(example[column], str) for column in columns}
    if len(set(kinds.values())) > 1:
        text = [column for column, is_text in kinds.items() if is_text]
        _fail(
            index,
            text[0],
            f"`{'`, `'.join(text)}` is text but the rest of the row is messages",
            "Use text or messages for every column of a row.",
        )


def chat_template_arguments(example: dict[str, Any]) -> dict[str, Any]:
    """The per-row `apply_chat_template` arguments of a conversational row, as TRL's DPOTrainer passes them: ``tools``
    (a list of schemas, or its JSON text) and the ``chat_template_kwargs`` dict, less the None values Arrow fills in
    for keys that only other rows have."""
    arguments = {k: v for k, v in (example.get("chat_template_kwargs") or {}).items() if v is not None}
    tools = example.get("tools")
    if tools is not None:
        arguments["tools"] = json.loads(tools) if isinstance(tools, str) else tools
    return arguments


def _check_chat_template_columns(example: dict[str, Any], index: int, conversational: bool) -> None:
    tools, kwargs = example.get("tools"), example.get("chat_template_kwargs")
    if kwargs is not None and not isinstance(kwargs, dict):
        _fail(index, "chat_template_kwargs", f"expected a dict, got {_describe(kwargs)}", "Give a dict or nothing.")
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as error:
            _fail(index, "tools", f"the text is not JSON ({error.msg})", "Give a list of tool schemas as JSON.")
    if tools is not None and not isinstance(tools, list):
        _fail(index, "tools", f"expected a list of tool schemas, got {_describe(tools)}", "Give a list or nothing.")
    if not conversational and (tools or kwargs and any(v is not None for v in kwargs.values())):
        _fail(
            index,
            "tools" if tools else "chat_template_kwargs",
            "only conversational rows go through the chat template, and this row is text",
            "Give the prompt and completion as messages, or drop the column.",
        )


def _check_label(value: Any, index: int, column: str = "label") -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if value is None:
        _fail(index, column, "the label is missing", "Fill it in (True/False or 0/1) or drop the row.")
    _fail(
        index,
        column,
        f"labels must be True/False or 0/1, got {_describe(value)}",
        "Map the label to 0/1, or put graded values in a float `score` column instead.",
    )


def _label_to_score(value: Any, index: int) -> float:
    return float(_check_label(value, index))


def _check_score(value: Any, index: int, score_type: str) -> float:
    if value is None:
        _fail(index, "score", "the score is missing", "Fill it in or drop the row.")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(index, "score", f"scores must be numbers, got {_describe(value)}", "Convert the column to float.")
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
    _check_text(example, index, "prompt")
    _check_text(example, index, "completion")
    _check_same_kind(example, index, ("prompt", "completion"))
    _check_chat_template_columns(example, index, isinstance(example["completion"], list))
    if label_column == "label":
        return {"score": _label_to_score(example["label"], index)}
    return {"score": _check_score(example["score"], index, score_type)}


def _check_pair(example: dict[str, Any], index: int) -> None:
    for column in ("chosen", "rejected"):
        value = example[column]
        if not isinstance(value, (str, list)) or _is_empty(value):
            _fail(index, column, "the completion is empty or not text", "Drop the pair or fill in both completions.")
        if isinstance(value, list):
            _check_roles(value, index, column)
    texts = ("prompt", "chosen", "rejected") if "prompt" in example else ("chosen", "rejected")
    if "prompt" in example:
        _check_text(example, index, "prompt")
        if example["chosen"] == example["rejected"]:
            _fail(
                index,
                "rejected",
                "`chosen` and `rejected` are the same, so the pair would train one text as both positive and negative",
                "Drop the pair or fix one side.",
            )
    _check_same_kind(example, index, texts)
    _check_chat_template_columns(example, index, isinstance(example["chosen"], list))


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
    pair = extract_prompt(example)
    if _is_empty(pair["prompt"]):
        _fail(
            index,
            "chosen",
            "`chosen` and `rejected` share no prefix, so there is no prompt",
            "Give the prompt explicitly in a `prompt` column, or drop the pair.",
        )
    return pair


def _check_pairwise_row(example: dict[str, Any], index: int) -> None:
    _check_pair(example, index)
    if "prompt" not in example:
        _check_pair(_extract_prompt_checked(example, index), index)


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
        dataset = dataset.map(_check_pair, with_indices=True, **map_kwargs)
    return unpair_preference_dataset(dataset, **map_kwargs)


def _pointwise_columns(columns: list[str]) -> str:
    """The feedback column of point-wise rows, ``label`` or ``score``, after checking the columns are there."""
    for required in ("prompt", "completion"):
        if required not in columns:
            raise ValueError(f"The dataset has no `{required}` column (columns: {columns}). {POINTWISE_FORMAT_HELP}")
    present = [c for c in ("label", "score") if c in columns]
    if len(present) != 1:
        problem = "has both `label` and `score`" if present else "has neither a `label` nor a `score` column"
        raise ValueError(f"The dataset {problem} (columns: {columns}). {POINTWISE_FORMAT_HELP}")
    return present[0]


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
    check_column_types(dataset)
    columns = column_names(dataset)

    if "chosen" in columns and "rejected" in columns:
        dataset = pairwise_to_pointwise(dataset, **map_kwargs)
        columns = column_names(dataset)

    label_column = _pointwise_columns(columns)
    return dataset.map(
        _normalise_pointwise,
        with_indices=True,
        fn_kwargs={"score_type": score_type, "label_column": label_column},
        remove_columns=["label"] if label_column == "label" else None,
        **map_kwargs,
    )


# ----------------------------------------------------------------------------------------------------------------
# Column types and invalid rows
# ----------------------------------------------------------------------------------------------------------------
def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, (int, float)) else {str: "string", list: "list", dict: "object"}[type(value)]


def _raw_json_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON array or JSON Lines file as Python's json reads them, before any type inference."""
    text = _read_text(path)
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _first_mixed_row(path: Path, column: str) -> tuple[int, str, str] | None:
    """(row, its kind, the first row's kind) of the first value of ``column`` whose JSON type differs from the first."""
    values = [(index, row.get(column)) for index, row in enumerate(_raw_json_rows(path))]
    kinds = [(index, _json_kind(value)) for index, value in values if value is not None]
    return next(((index, kind, kinds[0][1]) for index, kind in kinds if kind != kinds[0][1]), None)


def check_column_types(dataset: Dataset | IterableDataset, path: str | Path | None = None) -> None:
    """Refuse a column whose rows mix value types, such as a string "0.5" among float scores.

    `datasets` stores such a column as `Json` and decodes the string "0.5" as the number 0.5, so the values can only
    be told apart in the file: with the ``path`` of the JSON file the dataset came from, the error names the row.
    """
    features = dataset.features or {}
    mixed = [column for column in _TYPED_COLUMNS if isinstance(features.get(column), Json)]
    if not mixed:
        return
    column = mixed[0]
    found = _first_mixed_row(Path(path), column) if path is not None and _is_json_file(Path(path)) else None
    fix = "Give every row a value of the same type (numbers as numbers, not strings)."
    if found is None:
        raise ValueError(f"Column `{column}` mixes value types (for example numbers and strings). {fix}")
    index, kind, first_kind = found
    problem = f"a {kind} among {first_kind} values (the column mixes types)"
    raise ValueError(f"Row {index}, column `{column}`: {problem}. {fix}")


def invalid_rows(dataset: Dataset, check: Callable[[dict[str, Any], int], Any]) -> dict[int, RowError]:
    """The rows ``check(example, index)`` refuses, by index, with their errors."""
    problems = {}
    for index, example in enumerate(dataset):
        try:
            check(example, index)
        except RowError as error:
            problems[index] = error
    return problems


def _drop_report(problems: dict[int, RowError], total: int, what: str, shown: int = 5) -> str:
    by_reason: dict[str, list[int]] = {}
    for index, error in problems.items():
        by_reason.setdefault(f"column `{error.column}`: {error.problem}", []).append(index)
    reasons = sorted(by_reason.items(), key=lambda item: -len(item[1]))
    parts = [
        f"{len(rows)} x {reason} (rows {', '.join(map(str, rows[:shown]))}{', ...' if len(rows) > shown else ''})"
        for reason, rows in reasons[:shown]
    ]
    more = f"; and {len(reasons) - shown} other reasons" if len(reasons) > shown else ""
    return f"Dropped {len(problems)} of {total} rows of {what}: {'; '.join(parts)}{more}."


def drop_invalid_rows(dataset: Dataset, check: Callable[[dict[str, Any], int], Any], what: str) -> Dataset:
    """``dataset`` without the rows ``check`` refuses, reported in a warning (counts by reason, first row numbers)."""
    problems = invalid_rows(dataset, check)
    if not problems:
        return dataset
    if len(problems) == len(dataset):
        raise ValueError(f"Every row of {what} is invalid; the first: {next(iter(problems.values()))}")
    logger.warning(_drop_report(problems, len(dataset), what))
    return dataset.select([index for index in range(len(dataset)) if index not in problems])


def _need_columns(dataset: Dataset, required: tuple[str, ...], data_format: str) -> None:
    columns = column_names(dataset)
    missing = [column for column in required if column not in columns]
    if missing:
        raise ValueError(
            f"{FORMAT_NAMES[data_format]} need the columns {required} (columns: {columns}); missing: {missing}."
        )


def _checked_pair(convert: Callable[[dict[str, Any], int], dict[str, Any]]) -> Callable[[dict[str, Any], int], None]:
    """A row check: ``convert`` a row to a pair, then check the pair as `pairwise_to_pointwise` will."""

    def check(example: dict[str, Any], index: int) -> None:
        _check_pair(example | convert(example, index), index)

    return check


def _to_pairs(
    dataset: Dataset,
    convert: Callable[[dict[str, Any], int], dict[str, Any]],
    data_format: str,
    drop_invalid: bool,
    stale: tuple[str, ...] = (),
) -> Dataset:
    """``dataset.map(convert)`` (to ``prompt``, ``chosen``, ``rejected``), without the ``stale`` source columns;
    with ``drop_invalid``, the rows that would fail here or in `pairwise_to_pointwise` are dropped first."""
    if drop_invalid:
        dataset = drop_invalid_rows(dataset, _checked_pair(convert), FORMAT_NAMES[data_format])
    return dataset.map(convert, with_indices=True, remove_columns=[c for c in stale if c in dataset.column_names])


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
            "Fill in the response, or drop the pair (`drop_invalid` drops such pairs).",
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
            "Fix or drop the pair (`drop_invalid` drops such pairs).",
        )
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def hh_to_pairwise(dataset: Dataset, drop_invalid: bool = False) -> Dataset:
    """Raw Anthropic HH rows (``chosen``/``rejected`` transcripts) to conversational ``prompt``, ``chosen``,
    ``rejected``.

    Each transcript is split at its last assistant turn: the turns before it become the ``prompt`` messages (roles
    ``user``/``assistant``), the turn itself the one ``assistant`` message of ``chosen`` / ``rejected``. Contents are
    stripped. Consecutive turns of one speaker (a few HH transcripts repeat ``\\n\\nAssistant:`` within a turn) are
    merged into one message, so roles alternate as chat templates expect.

    A pair whose transcripts do not parse, whose last assistant turn is empty, whose two dialogues differ before
    the last assistant turn or whose two responses are the same raises a ValueError naming the row; with
    ``drop_invalid=True`` such pairs are dropped instead and counted in a warning.
    """
    _need_columns(dataset, ("chosen", "rejected"), "hh")
    return _to_pairs(dataset, _hh_pair, "hh", drop_invalid)


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


def _kto_converter(columns: list[str]) -> Callable[[dict[str, Any], int], dict[str, Any]]:
    """The row converter of KTO rows with these columns (checked): messages -> prompt + completion, label."""
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

    convert.stale = [messages_column] + ([label_column] if label_column != "label" else [])
    return convert


def kto_to_pointwise(dataset: Dataset, drop_invalid: bool = False) -> Dataset:
    """KTO-style rows to conversational point-wise ``prompt``, ``completion``, ``label`` rows.

    Input: a ``messages`` (or ShareGPT ``conversations``) column whose last message is the assistant reply, with
    ``role``/``content`` or ``from``/``value`` keys (roles user/human, assistant/gpt, system), and a ``label`` (or
    LLaMA-Factory ``kto_tag``) column of True/False or 0/1. The reply becomes the ``completion``, the messages before
    it the ``prompt``; other columns are kept. ``drop_invalid=True`` drops bad rows with a warning instead of raising.
    """
    convert = _kto_converter(column_names(dataset))
    if drop_invalid:
        dataset = drop_invalid_rows(dataset, _kto_check(convert), FORMAT_NAMES["kto"])
    return dataset.map(convert, with_indices=True, remove_columns=convert.stale)


def _kto_check(convert: Callable[[dict[str, Any], int], dict[str, Any]]) -> Callable[[dict[str, Any], int], None]:
    def check(example: dict[str, Any], index: int) -> None:
        _normalise_pointwise(example | convert(example, index), index, "binary", "label")

    return check


def _reply(message: Any, index: int, column: str) -> list[dict[str, str]]:
    """``chosen`` / ``rejected`` of a ShareGPT preference row: one assistant message, as a one-message list."""
    if not isinstance(message, dict):
        _fail(
            index,
            column,
            f"expected one message ({{from, value}} or {{role, content}}), got {_describe(message)}",
            "Give the reply as one message dict.",
        )
    reply = _chatml([message], index, column)
    if reply[0]["role"] != "assistant":
        _fail(index, column, f"the reply is the {reply[0]['role']}'s, not the assistant's", "Use `from: gpt`.")
    return reply


def _system(example: dict[str, Any], index: int) -> list[dict[str, str]]:
    system = example.get("system")
    if system is not None and not isinstance(system, str):
        _fail(index, "system", f"expected a string, got {_describe(system)}", "Give the system prompt as text.")
    return [{"role": "system", "content": system}] if system else []


def _sharegpt_pair(example: dict[str, Any], index: int) -> dict[str, Any]:
    column = "conversations" if "conversations" in example else "messages"
    prompt = _chatml(example[column], index, column)
    if prompt[-1]["role"] != "user":
        _fail(
            index,
            column,
            f"the conversation ends with the {prompt[-1]['role']}'s message, not the user's",
            "End it with the user turn that `chosen` and `rejected` answer.",
        )
    system = _system(example, index) if prompt[0]["role"] != "system" else []
    return {
        "prompt": system + prompt,
        "chosen": _reply(example["chosen"], index, "chosen"),
        "rejected": _reply(example["rejected"], index, "rejected"),
    }


def sharegpt_to_pairwise(dataset: Dataset, drop_invalid: bool = False) -> Dataset:
    """LLaMA-Factory ShareGPT preference rows to conversational ``prompt``, ``chosen``, ``rejected``.

    Input (as in LLaMA-Factory's ``dpo_en_demo.json``): a ``conversations`` (or ``messages``) list of
    ``from``/``value`` (or ``role``/``content``) messages ending with the user's turn, ``chosen`` and ``rejected``
    as single assistant messages, and optionally a ``system`` string. Roles human/gpt/system map to
    user/assistant/system. ``drop_invalid=True`` drops bad rows with a warning instead of raising.
    """
    _need_columns(dataset, ("chosen", "rejected"), "sharegpt")
    _messages_column(column_names(dataset), FORMAT_NAMES["sharegpt"])
    return _to_pairs(dataset, _sharegpt_pair, "sharegpt", drop_invalid, ("conversations", "messages", "system"))


def _history(example: dict[str, Any], index: int) -> list[dict[str, str]]:
    messages = []
    for turn, pair in enumerate(example.get("history") or []):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(text, str) for text in pair)):
            _fail(index, "history", f"turn {turn} is not a [user, assistant] pair of strings", "Fix or drop it.")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return messages


def _alpaca_pair(example: dict[str, Any], index: int) -> dict[str, Any]:
    texts = {column: example.get(column) or "" for column in ("instruction", "input")}
    for column, value in (texts | {side: example[side] for side in ("chosen", "rejected")}).items():
        if not isinstance(value, str):
            _fail(index, column, f"expected a string, got {_describe(value)}", "Give the column as text.")
    query = "\n".join(text for text in texts.values() if text)  # LLaMA-Factory joins instruction and input so
    return {
        "prompt": _system(example, index) + _history(example, index) + [{"role": "user", "content": query}],
        "chosen": [{"role": "assistant", "content": example["chosen"]}],
        "rejected": [{"role": "assistant", "content": example["rejected"]}],
    }


def alpaca_to_pairwise(dataset: Dataset, drop_invalid: bool = False) -> Dataset:
    """LLaMA-Factory Alpaca preference rows to conversational ``prompt``, ``chosen``, ``rejected``.

    Input: ``instruction`` and optional ``input`` (joined by a newline into the user's turn, as LLaMA-Factory does),
    ``chosen`` and ``rejected`` strings, and optionally ``system`` (a string) and ``history`` (earlier
    ``[user, assistant]`` turns). ``drop_invalid=True`` drops bad rows with a warning instead of raising.
    """
    _need_columns(dataset, ("instruction", "chosen", "rejected"), "alpaca")
    return _to_pairs(dataset, _alpaca_pair, "alpaca", drop_invalid, ("instruction", "input", "system", "history"))


def _demonstrations_to_pointwise(demonstrations: Dataset) -> Dataset:
    columns = column_names(demonstrations)
    for feedback in ("label", "score"):
        if feedback in columns:
            raise ValueError(
                f"The demonstrations have a `{feedback}` column, but demonstrations are unlabelled SFT rows. Drop "
                f"it, or pass these rows as `preferences`."
            )
    if "prompt" in columns and "completion" in columns:
        return demonstrations.map(_check_demonstration, with_indices=True)
    column = _messages_column(columns, "Demonstrations without `prompt` and `completion` columns")
    return demonstrations.map(
        lambda example, index: _split_conversation(example[column], index, column),
        with_indices=True,
        remove_columns=[column],
    )


def _check_demonstration(example: dict[str, Any], index: int) -> None:
    for column in ("prompt", "completion"):
        _check_text(example, index, column)
    _check_same_kind(example, index, ("prompt", "completion"))


def _demonstration_score(positive_threshold: float, demonstration_score: float | None) -> float:
    """The score demonstrations get: ``demonstration_score``, or 1.0 when that is a positive under the threshold."""
    if demonstration_score is None:
        if positive_threshold > 1.0:
            raise ValueError(
                f"With positive_threshold={positive_threshold} > 1, a demonstration scored 1.0 would be a negative. "
                "Pass `demonstration_score`, e.g. the top of your score scale."
            )
        return 1.0
    if not (_is_real(demonstration_score) and math.isfinite(demonstration_score)):
        raise ValueError(f"`demonstration_score` must be a finite number, got {demonstration_score!r}.")
    if demonstration_score < positive_threshold:
        raise ValueError(
            f"`demonstration_score={demonstration_score}` is below positive_threshold={positive_threshold}, so "
            "demonstrations would be negatives. Give a score at or above the threshold."
        )
    return float(demonstration_score)


def _with_columns_of(dataset: Dataset, other: Dataset, columns: tuple[str, ...]) -> Dataset:
    """``dataset`` plus, empty (None), each of ``columns`` that only ``other`` has."""
    for column in columns:
        if column in other.column_names and column not in dataset.column_names:
            dataset = dataset.add_column(column, [None] * len(dataset)).cast_column(column, other.features[column])
    return dataset


def mix_demonstrations(
    demonstrations: Dataset,
    preferences: Dataset,
    ratio: float | None = None,
    seed: int = 0,
    positive_threshold: float = 1.0,
    demonstration_score: float | None = None,
) -> Dataset:
    """ULMA's unified training set: demonstrations (SFT rows) as positives, plus point-wise preferences.

    Demonstrations are ``prompt`` + ``completion`` rows, or ``messages`` (or ShareGPT ``conversations``) whose last
    message is the assistant's. They become positives: ``label`` True, or, when the preferences have a ``score``
    column, ``demonstration_score`` (default 1.0, which needs the trainer's ``positive_threshold`` <= 1: pass the
    threshold so that a demonstration is never scored as a negative). ``preferences`` are point-wise rows
    (``prompt``, ``completion`` and one of ``label`` / ``score``, e.g. from the other converters).

    ``ratio`` is the number of demonstration rows per preference row in the result: ``round(ratio *
    len(preferences))`` demonstrations, sampled without replacement, or every demonstration repeated and the rest
    sampled when more are needed, deterministically from ``seed``. ``None`` uses every demonstration once.

    Columns that only one side has are dropped, except the chat template's ``tools`` / ``chat_template_kwargs``,
    which the other side gets empty; the result holds the demonstrations first, then the preferences (the trainers
    shuffle).
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

    positive = True if feedback == ["label"] else _demonstration_score(positive_threshold, demonstration_score)
    demonstrations = demonstrations.map(lambda _: {feedback[0]: positive})
    demonstrations = _with_columns_of(demonstrations, preferences, CHAT_TEMPLATE_COLUMNS)
    preferences = _with_columns_of(preferences, demonstrations, CHAT_TEMPLATE_COLUMNS)
    pref_columns = column_names(preferences)
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


def _builder(path: Path) -> str | None:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    return _FILE_BUILDERS.get(suffixes[-1]) if suffixes else None


def _is_json_file(path: Path) -> bool:
    return path.is_file() and _builder(path) == "json"


def _read_bytes(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


def _read_text(path: Path) -> str:
    return _read_bytes(path).decode("utf-8")


class _BadNumber(ValueError):
    def __init__(self, literal: str, problem: str):
        super().__init__(f"the number {literal} {problem}")
        self.literal = literal


def _float64(literal: str) -> float:
    if not math.isfinite(value := float(literal)):
        raise _BadNumber(literal, "does not fit in a 64-bit float")
    return value


def _int64(literal: str) -> int:
    if not -(2**63) <= (value := int(literal)) < 2**63:
        raise _BadNumber(literal, "does not fit in a 64-bit integer")
    return value


def _not_a_number(literal: str) -> float:
    raise _BadNumber(literal, "is not valid JSON")


def _json_problem(text: str) -> str | None:
    """Where a JSON array or JSON Lines text stops being JSON that Arrow can store (line, column, why), or None."""
    whole = text.lstrip().startswith("[")
    documents = [(0, text)] if whole else [(n, line) for n, line in enumerate(text.splitlines()) if line.strip()]
    for first_line, document in documents:
        try:
            json.loads(document, parse_float=_float64, parse_int=_int64, parse_constant=_not_a_number)
        except json.JSONDecodeError as error:
            return f"line {first_line + error.lineno}, column {error.colno}: {error.msg}"
        except _BadNumber as error:
            line = first_line + document[: document.find(error.literal)].count("\n") + 1
            return f"line {line}: {error}"
    return None


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception with a message in ``error``'s chain of causes (datasets wraps the real one)."""
    causes = [error]
    while (cause := causes[-1].__cause__ or causes[-1].__context__) is not None and cause not in causes:
        causes.append(cause)
    return next((cause for cause in reversed(causes) if str(cause)), error)


def _why_unreadable(path: Path, error: Exception) -> str:
    """Why `load_dataset` could not read a local file: where and what, and the fix."""
    raw = _read_bytes(path)
    if not raw.strip():
        return "the file is empty. Put the rows in it"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        line = raw[: bad.start].count(b"\n") + 1
        return f"line {line}: byte 0x{raw[bad.start]:02x} is not UTF-8 text. Re-save the file as UTF-8"
    if _builder(path) == "json" and (problem := _json_problem(text)):
        return f"{problem}. Fix the JSON there (a .jsonl file holds one JSON object per line)"
    cause = root_cause(error)
    if "corresponds to no data" in str(cause):
        return "the file has no rows. Put the rows in it"
    return f"{type(cause).__name__}: {cause}"


def _load_file(path: Path) -> DatasetDict:
    builder = _builder(path)
    if builder is None:
        raise ValueError(f"Cannot read {path}: use .json, .jsonl, .jsonl.gz, .parquet, .csv or .arrow.")
    json_logger = logging.getLogger("datasets.packaged_modules.json.json")
    level, json_logger.level = json_logger.level, logging.CRITICAL  # its error precedes the raise: ours replaces both
    try:
        loaded = load_dataset(builder, data_files=str(path))
        for split in loaded.values():
            split.data.validate(full=True)  # Arrow's JSON reader takes bytes that are not UTF-8 without a word
    except Exception as error:  # noqa: BLE001 (whatever stops the loader, the file is what the user can fix)
        raise ValueError(f"Cannot read {path}: {_why_unreadable(path, error)}.") from error
    finally:
        json_logger.setLevel(level)
    for split in loaded.values():
        check_column_types(split, path)
    return loaded


def load_data(name: str, config: str | None = None) -> DatasetDict:
    """A `DatasetDict` from a Hub name or a local path: json/jsonl(.gz), parquet, csv, or a `save_to_disk` folder.

    A local file that does not load raises a ValueError saying where it stops (line, column) and why: empty, not
    UTF-8, not JSON, a number out of 64-bit range, a column whose rows mix value types.
    """
    path = Path(name)
    if path.is_dir() and any((path / marker).exists() for marker in ("dataset_info.json", "dataset_dict.json")):
        loaded = load_from_disk(str(path))
        return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})
    if path.is_file():
        return _load_file(path)
    if isinstance(loaded := load_dataset(name, name=config), Dataset):
        return DatasetDict({"train": loaded})
    return loaded


def detect_format(dataset: Dataset) -> str:
    """The format of a dataset, one of `DATA_FORMATS` but ``auto``, from its columns and first row."""
    columns = set(column_names(dataset))
    replies = columns & {"chosen", "rejected"}
    first = dataset[0][min(replies)] if replies and len(dataset) else None
    if replies and "instruction" in columns:
        return "alpaca"
    if replies and ("conversations" in columns or (isinstance(first, dict) and "messages" in columns)):
        return "sharegpt"
    if {"chosen", "rejected"} <= columns:
        return "hh" if isinstance(first, str) and first.lstrip("\n").startswith("Human:") else "pairwise"
    if columns & {"messages", "conversations"} and columns & {"label", "kto_tag"}:
        return "kto"
    return "pointwise"


def _row_check(dataset: Dataset, data_format: str, score_type: str | None) -> Callable[[dict[str, Any], int], Any]:
    """What a row of ``data_format`` must pass to be converted and trained on (after checking the columns)."""
    columns = column_names(dataset)
    if data_format == "pointwise":
        label_column = _pointwise_columns(columns)
        score_type = score_type or infer_score_type(columns)
        return lambda example, index: _normalise_pointwise(example, index, score_type, label_column)
    if data_format == "kto":
        return _kto_check(_kto_converter(columns))
    if data_format == "pairwise":
        _need_columns(dataset, ("chosen", "rejected"), "pairwise")
        return _check_pairwise_row
    _need_columns(dataset, ("instruction",) * (data_format == "alpaca") + ("chosen", "rejected"), data_format)
    if data_format == "sharegpt":
        _messages_column(columns, FORMAT_NAMES["sharegpt"])
    return _checked_pair({"hh": _hh_pair, "sharegpt": _sharegpt_pair, "alpaca": _alpaca_pair}[data_format])


def _convert(dataset: Dataset, data_format: str) -> Dataset:
    if data_format == "hh":
        return hh_to_pointwise(dataset)
    if data_format == "sharegpt":
        return pairwise_to_pointwise(sharegpt_to_pairwise(dataset))
    if data_format == "alpaca":
        return pairwise_to_pointwise(alpaca_to_pairwise(dataset))
    if data_format == "kto":
        return kto_to_pointwise(dataset)
    if data_format == "pairwise":
        return pairwise_to_pointwise(dataset)
    return dataset


def convert_to_pointwise(
    dataset: Dataset, data_format: str = "auto", drop_invalid: bool = False, score_type: str | None = None
) -> Dataset:
    """Rows of ``data_format`` (one of `DATA_FORMATS`; ``auto`` detects it) as point-wise rows, checked row by row
    as the converters and the trainers will check them (``score_type`` as the trainer's, inferred when None).

    A bad row raises a ValueError that names the format the rows were read as, the row, the column and the fix;
    with ``drop_invalid=True`` bad rows are dropped instead, and a warning counts them by reason. Point-wise rows
    are returned unchanged.
    """
    if data_format not in DATA_FORMATS:
        raise ValueError(f"Unknown data format {data_format!r}: use one of {list(DATA_FORMATS)}.")
    if len(dataset) == 0:
        raise ValueError(f"The dataset has no rows. {POINTWISE_FORMAT_HELP}")
    check_column_types(dataset)
    data_format = detect_format(dataset) if data_format == "auto" else data_format
    try:
        check = _row_check(dataset, data_format, score_type)
        if drop_invalid:
            dataset = drop_invalid_rows(dataset, check, FORMAT_NAMES[data_format])
        else:
            for index, example in enumerate(dataset):
                check(example, index)
        return _convert(dataset, data_format)
    except ValueError as error:
        if str(error).startswith(FORMAT_NAMES[data_format]):
            raise
        raise ValueError(f"Read as {FORMAT_NAMES[data_format]}: {error}") from error
