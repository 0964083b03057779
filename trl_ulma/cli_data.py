"""The training commands' data: the file or the demo data read into point-wise train and held-out splits, with the
flags that map columns, read ratings, slice splits, hold out prompts and mix in demonstrations, each row read and
dropped counted in the run's `RowAccount`; an error names the flag and file it came from."""

from contextlib import contextmanager
from typing import TYPE_CHECKING

from .run_report import RowAccount


if TYPE_CHECKING:
    from .cli_args import ULMAScriptArguments


@contextmanager
def _reading(flag: str, name: str, split: str | None = None):
    """Name the data source (flag, file, split) in the ValueErrors raised while reading it, unless they already do."""
    try:
        yield
    except ValueError as error:
        if name in str(error) and split is None:
            raise
        raise ValueError(f"{flag} {name}{f' (split {split})' if split else ''}: {error}") from error


COLUMN_HINT = (
    "On the command line: --columns completion=response maps a file's column to ours; --rating_column stars reads "
    "ratings on a scale (--rating_scale 1,5)."
)


def split_rows(splits, spec: str, flag: str):
    """`name` or a slice such as `train[:16]`, `train[10:20]`, `train[:10%]` (datasets' split syntax)."""
    from datasets import ReadInstruction

    if spec in splits:
        return splits[spec]
    name = spec.split("[", 1)[0]
    if name not in splits:
        raise ValueError(f"{flag}={spec!r} is not a split of the data (splits: {list(splits)}). Pass one of them.")
    try:
        (instruction,) = ReadInstruction.from_spec(spec).to_absolute({name: len(splits[name])})
    except ValueError as error:
        raise ValueError(f"{flag}={spec!r}: {error}. Use a split name or a slice such as 'train[:16]'.") from None
    rows = splits[name]
    if (instruction.from_, instruction.to) != (0, len(rows)):
        rows = rows.select(range(instruction.from_, instruction.to))
    return rows


def as_feedback_columns(split, extra: "ULMAScriptArguments"):
    """The file's columns under the package's names (--columns) and ratings as scores (--rating_column)."""
    from .data import column_names
    from .formats import ratings_to_scores

    columns = column_names(split)
    for theirs, ours in extra.column_map.items():
        if theirs not in columns:
            raise ValueError(f"--columns {ours}={theirs}: there is no `{theirs}` column (columns: {columns}).")
        if ours in columns and ours not in extra.column_map:
            raise ValueError(
                f"--columns {ours}={theirs}: the data already has a `{ours}` column. Map that one away too (e.g. "
                f"--columns {ours}={theirs},old_{ours}={ours}) or drop it."
            )
    if extra.column_map:
        split = split.rename_columns(extra.column_map)
    if extra.rating_column is not None:
        split = ratings_to_scores(
            split,
            extra.rating_column,
            extra.rating_range,
            higher_is_better=not extra.rating_lower_is_better,
            positive_at=extra.rating_positive_at,
            drop_invalid=extra.drop_invalid,
        )
    return split


def _load_splits(script_args, extra: "ULMAScriptArguments", training_args, account: RowAccount):
    from .files import load_data
    from .formats import FORMAT_NAMES, convert_to_pointwise

    with _reading("--dataset_name", script_args.dataset_name):
        splits = load_data(script_args.dataset_name, script_args.dataset_config)
    chosen = {
        script_args.dataset_train_split: split_rows(splits, script_args.dataset_train_split, "--dataset_train_split")
    }
    test = script_args.dataset_test_split
    if test in splits or test.split("[", 1)[0] in splits or test != "test":  # "test": the default, when there is one
        chosen[test] = split_rows(splits, test, "--dataset_test_split")
    converted = {}
    for name, split in chosen.items():
        is_train = name == script_args.dataset_train_split
        if is_train and extra.max_samples is not None:
            split = split.select(range(min(extra.max_samples, len(split))))
        report: dict = {}
        rows_read = len(split)
        with _reading("--dataset_name", script_args.dataset_name, name if len(splits) > 1 else None):
            try:
                split = as_feedback_columns(split, extra)
                converted[name] = convert_to_pointwise(
                    split, extra.dataset_format, extra.drop_invalid, training_args.score_type, report=report
                )
            except ValueError as error:
                if "column" in str(error) and "--columns" not in str(error) and "Row " not in str(error):
                    raise ValueError(f"{error} {COLUMN_HINT}") from error
                raise
        if is_train:
            account.data_format = FORMAT_NAMES[report["format"]]
            account.rows_read = rows_read
            dropped = rows_read - len(split) + report["dropped"]
            account.steps.append(("dropped as invalid (--drop_invalid)", dropped))
            if len(converted[name]) != rows_read - dropped:  # pairs and transcripts: two rows each
                account.steps.append(("as point-wise rows", len(converted[name])))
    return converted


def prepare_datasets(script_args, extra: "ULMAScriptArguments", training_args, account: RowAccount):
    """(train, held-out or None) datasets for a training command; ``account`` gets the rows read and dropped."""
    from .data import split_by_prompt
    from .demo import load_demo_dataset
    from .files import load_data
    from .formats import mix_demonstrations

    if script_args.dataset_name is None:
        train, held_out = load_demo_dataset("train"), load_demo_dataset("test")
        account.rows_read = len(train)
    else:
        splits = _load_splits(script_args, extra, training_args, account)
        train = splits[script_args.dataset_train_split]
        held_out = splits.get(script_args.dataset_test_split)
    if held_out is None and extra.eval_fraction > 0:
        train, held_out = split_by_prompt(train, extra.eval_fraction)
        account.steps.append(("held out (--eval_fraction)", len(held_out)))
    if extra.demonstration_dataset_name is not None:
        rows = len(train)
        with _reading("--demonstration_dataset_name", extra.demonstration_dataset_name):
            demonstrations = load_data(extra.demonstration_dataset_name)["train"]
            train = mix_demonstrations(
                demonstrations,
                train,
                ratio=extra.demonstration_ratio,
                positive_threshold=training_args.positive_threshold,
                demonstration_score=extra.demonstration_score,
            )
        account.steps.append(("added as positives (--demonstration_dataset_name)", len(train) - rows))
    return train, held_out
