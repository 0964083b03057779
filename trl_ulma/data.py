"""The point-wise data format: validation and normalisation of rows to ``prompt``, ``completion``, ``score``.

Accepted rows (standard text or conversational messages, extra columns ignored):
    point-wise  ``prompt`` + ``completion`` + exactly one of ``label`` (bool or 0/1) or ``score`` (float)
    paired      ``chosen`` + ``rejected`` with an explicit ``prompt`` or an implicit one (their shared prefix);
                each pair becomes two rows, chosen with label 1 and rejected with label 0

Bad rows raise a ValueError (a `RowError`) naming the row (counted from 0), the column and a fix: nothing is
silently dropped, coerced or turned into NaN. `drop_invalid_rows` drops bad rows instead, with a warning that counts
them by reason. Other feedback formats (HH, ShareGPT, Alpaca, KTO, ratings, demonstrations) are converted to these
rows in `trl_ulma.formats`; files are read in `trl_ulma.files`.
"""

import json
import logging
import math
import random
from collections.abc import Callable
from typing import Any

from datasets import Dataset, IterableDataset
from trl.data_utils import extract_prompt, unpair_preference_dataset

from .files import check_column_types


logger = logging.getLogger(__name__)

POINTWISE_FORMAT_HELP = (
    "Point-wise rows need `prompt`, `completion` and exactly one of `label` (bool or 0/1) or `score` (float); "
    "paired rows need `chosen` and `rejected` (and optionally `prompt`)."
)
CHAT_ROLES = ("system", "user", "assistant", "tool")
# Per-row arguments of the chat template, as in TRL's DPOTrainer (see `chat_template_arguments`)
CHAT_TEMPLATE_COLUMNS = ("tools", "chat_template_kwargs")


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


def describe(value: Any) -> str:
    """A value as an error shows it: missing, a string (quoted, so "0.5" is not read as the number), or its type."""
    if value is None:
        return "no value (the cell is empty)"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return repr(value) if isinstance(value, (bool, int, float)) else f"a {type(value).__name__}"


def fail(index: int, column: str, problem: str, fix: str) -> None:
    raise RowError(index, column, problem, fix)


def _check_roles(messages: list, index: int, column: str) -> None:
    for position, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in CHAT_ROLES:
            fail(
                index,
                column,
                f"message {position} has role {role!r}" if isinstance(message, dict) else f"{message!r} is no message",
                f"Messages need a `role` among {', '.join(CHAT_ROLES)}: rename the role or drop the row.",
            )


def check_text(example: dict[str, Any], index: int, column: str) -> None:
    """A prompt or completion: text or a list of messages with known roles, not empty."""
    value = example[column]
    if not isinstance(value, (str, list)):
        fail(index, column, f"expected a string or a list of messages, got {describe(value)}", POINTWISE_FORMAT_HELP)
    if isinstance(value, list):
        _check_roles(value, index, column)
    if _is_empty(value):
        what = "prompt" if column == "prompt" else "completion"
        fail(index, column, f"the {what} is empty", f"Drop the row or give it a {what}.")


def check_same_kind(example: dict[str, Any], index: int, columns: tuple[str, ...]) -> None:
    """The texts of a row are all plain text or all messages, as TRL's tokenisation needs."""
    kinds = {column: isinstance(example[column], str) for column in columns}
    if len(set(kinds.values())) > 1:
        text = [column for column, is_text in kinds.items() if is_text]
        fail(
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
        fail(index, "chat_template_kwargs", f"expected a dict, got {describe(kwargs)}", "Give a dict or nothing.")
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as error:
            fail(index, "tools", f"the text is not JSON ({error.msg})", "Give a list of tool schemas as JSON.")
    if tools is not None and not isinstance(tools, list):
        fail(index, "tools", f"expected a list of tool schemas, got {describe(tools)}", "Give a list or nothing.")
    if not conversational and (tools or kwargs and any(v is not None for v in kwargs.values())):
        fail(
            index,
            "tools" if tools else "chat_template_kwargs",
            "only conversational rows go through the chat template, and this row is text",
            "Give the prompt and completion as messages, or drop the column.",
        )


def check_label(value: Any, index: int, column: str = "label") -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if value is None:
        fail(index, column, "the label is missing", "Fill it in (True/False or 0/1) or drop the row.")
    fail(
        index,
        column,
        f"labels must be True/False or 0/1, got {describe(value)}",
        "Map the label to 0/1, or put graded values in a float `score` column instead.",
    )


def _label_to_score(value: Any, index: int) -> float:
    return float(check_label(value, index))


def _check_score(value: Any, index: int, score_type: str) -> float:
    if value is None:
        fail(index, "score", "the score is missing", "Fill it in or drop the row.")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(index, "score", f"scores must be numbers, got {describe(value)}", "Convert the column to float.")
    if not math.isfinite(value):
        fail(index, "score", f"the score is {value}", "Scores must be finite: fix the value or drop the row.")
    if score_type == "binary" and not 0.0 <= value <= 1.0:
        fail(
            index,
            "score",
            f"binary scores are probabilities in [0, 1], got {value}",
            'Rescale the scores to [0, 1] or set `score_type="continuous"`.',
        )
    return float(value)


def normalise_pointwise(example: dict[str, Any], index: int, score_type: str, label_column: str) -> dict[str, Any]:
    check_text(example, index, "prompt")
    check_text(example, index, "completion")
    check_same_kind(example, index, ("prompt", "completion"))
    _check_chat_template_columns(example, index, isinstance(example["completion"], list))
    if label_column == "label":
        return {"score": _label_to_score(example["label"], index)}
    return {"score": _check_score(example["score"], index, score_type)}


def check_pair(example: dict[str, Any], index: int) -> None:
    for column in ("chosen", "rejected"):
        value = example[column]
        if not isinstance(value, (str, list)) or _is_empty(value):
            fail(index, column, "the completion is empty or not text", "Drop the pair or fill in both completions.")
        if isinstance(value, list):
            _check_roles(value, index, column)
    texts = ("prompt", "chosen", "rejected") if "prompt" in example else ("chosen", "rejected")
    if "prompt" in example:
        check_text(example, index, "prompt")
        if example["chosen"] == example["rejected"]:
            fail(
                index,
                "rejected",
                "`chosen` and `rejected` are the same, so the pair would train one text as both positive and negative",
                "Drop the pair or fix one side.",
            )
    check_same_kind(example, index, texts)
    _check_chat_template_columns(example, index, isinstance(example["chosen"], list))


def _extract_prompt_checked(example: dict[str, Any], index: int) -> dict[str, Any]:
    chosen, rejected = example["chosen"], example["rejected"]
    shorter = min(len(chosen), len(rejected))
    if chosen[:shorter] == rejected[:shorter]:  # `extract_prompt` would cut the prompt inside the shorter one
        fail(
            index,
            "chosen",
            "`chosen` and `rejected` are identical or one is a prefix of the other, so their shared prefix is no "
            "prompt",
            "Give the prompt explicitly in a `prompt` column, or drop the pair.",
        )
    pair = extract_prompt(example)
    if _is_empty(pair["prompt"]):
        fail(
            index,
            "chosen",
            "`chosen` and `rejected` share no prefix, so there is no prompt",
            "Give the prompt explicitly in a `prompt` column, or drop the pair.",
        )
    return pair


def check_pairwise_row(example: dict[str, Any], index: int) -> None:
    check_pair(example, index)
    if "prompt" not in example:
        check_pair(_extract_prompt_checked(example, index), index)


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
    dataset = dataset.map(check_pair, with_indices=True, **map_kwargs)
    if "prompt" not in columns:
        dataset = dataset.map(_extract_prompt_checked, with_indices=True, **map_kwargs)
        dataset = dataset.map(check_pair, with_indices=True, **map_kwargs)
    return unpair_preference_dataset(dataset, **map_kwargs)


def pointwise_columns(columns: list[str]) -> str:
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

    label_column = pointwise_columns(columns)
    return dataset.map(
        normalise_pointwise,
        with_indices=True,
        fn_kwargs={"score_type": score_type, "label_column": label_column},
        remove_columns=["label"] if label_column == "label" else None,
        **map_kwargs,
    )


# ----------------------------------------------------------------------------------------------------------------
# Invalid rows
# ----------------------------------------------------------------------------------------------------------------
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
