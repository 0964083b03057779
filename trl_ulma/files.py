"""Reading rows: `load_data` (a Hub name, a local file or a `save_to_disk` folder) and, for a local file that does
not load, where it stops and why; `check_column_types` refuses a column whose rows mix value types."""

import gzip
import json
import logging
import math
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, IterableDataset, Json, load_dataset, load_from_disk


# Columns whose values the converters read: datasets stores one that mixes types as `Json`, coercing "0.5" to 0.5
_TYPED_COLUMNS = (
    "prompt", "completion", "label", "score", "chosen", "rejected", "messages", "conversations", "kto_tag",
    "instruction", "input", "system", "history",
)  # fmt: skip


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
