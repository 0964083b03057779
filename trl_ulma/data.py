"""The point-wise data format: validation and normalisation of rows to ``prompt``, ``completion``, ``score``.

Accepted rows (standard text or conversational messages, extra columns ignored):
    point-wise  ``prompt`` + ``completion`` + exactly one of ``label`` (bool or 0/1) or ``score`` (float)
    paired      ``chosen`` + ``rejected`` with an explicit ``prompt`` or an implicit one (their shared prefix);
                each pair becomes two rows, chosen with label 1 and rejected with label 0

Bad rows raise a ValueError naming the row, the column and a fix: nothing is silently dropped or turned into NaN.
"""

import math
from typing import Any

from datasets import Dataset, IterableDataset
from trl.data_utils import extract_prompt, unpair_preference_dataset


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


def _label_to_score(value: Any, index: int) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return float(value)
    _fail(
        index,
        "label",
        f"labels must be True/False or 0/1, got {value!r}",
        "Map the label to 0/1, or put graded values in a float `score` column instead.",
    )


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
        for ambiguous in ("completion", "label", "score"):
            if ambiguous in columns:
                raise ValueError(
                    f"The dataset has paired columns `chosen`/`rejected` and a `{ambiguous}` column, so it is unclear "
                    f"which to train on. Remove or rename `{ambiguous}`, or drop `chosen`/`rejected`."
                )
        dataset = dataset.map(_check_pair, with_indices=True, **map_kwargs)
        if "prompt" not in columns:
            dataset = dataset.map(extract_prompt, **map_kwargs)
        dataset = unpair_preference_dataset(dataset, **map_kwargs)
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
