"""Converters from other feedback formats to point-wise rows, and `convert_to_pointwise`, which detects the format.

`pairwise_to_pointwise` (in `trl_ulma.data`) takes DPO pairs; here: `hh_to_pointwise` / `hh_to_pairwise` (raw
Anthropic HH transcripts), `sharegpt_to_pairwise` / `alpaca_to_pairwise` (LLaMA-Factory preference rows),
`ratings_to_scores` (bounded rating scales), `kto_to_pointwise` (KTO / LLaMA-Factory ``messages`` + ``label`` rows)
and `mix_demonstrations` (ULMA's demonstrations + preferences). Bad rows raise a `RowError` naming the row, the
column and the fix; ``drop_invalid=True`` drops them with a warning instead.
"""

import math
import random
import re
from collections.abc import Callable
from typing import Any

from datasets import Dataset, concatenate_datasets
from trl.data_utils import is_conversational

from .data import (
    CHAT_TEMPLATE_COLUMNS,
    POINTWISE_FORMAT_HELP,
    check_label,
    check_pair,
    check_pairwise_row,
    check_same_kind,
    check_text,
    column_names,
    describe,
    drop_invalid_rows,
    fail,
    infer_score_type,
    normalise_pointwise,
    pairwise_to_pointwise,
    pointwise_columns,
)
from .files import check_column_types


DATA_FORMATS = ("auto", "pointwise", "pairwise", "hh", "sharegpt", "alpaca", "kto")
FORMAT_NAMES = {
    "pointwise": "point-wise rows (prompt, completion, label or score)",
    "pairwise": "DPO pairs (prompt, chosen, rejected)",
    "hh": "Anthropic HH transcripts",
    "sharegpt": "LLaMA-Factory ShareGPT preference rows (conversations, chosen, rejected)",
    "alpaca": "LLaMA-Factory Alpaca preference rows (instruction, input, chosen, rejected)",
    "kto": "KTO rows (messages or conversations, label or kto_tag)",
}


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
        check_pair(example | convert(example, index), index)

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
        fail(
            index,
            column,
            f"expected a raw HH transcript string, got {type(text).__name__}",
            "For rows that are already messages, use `pairwise_to_pointwise`.",
        )
    pieces = _HH_TURN.split(text)
    if len(pieces) < 3 or pieces[0].strip():
        fail(index, column, f"not an HH transcript (it starts {text[:40]!r})", _HH_HELP)
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
        fail(index, column, "the transcript does not end with an assistant turn that follows the dialogue", _HH_HELP)
    if not messages[-1]["content"]:
        fail(
            index,
            column,
            "the last assistant turn is empty",
            "Fill in the response, or drop the pair (--drop_invalid, or `drop_invalid=True`, drops such pairs).",
        )
    return messages[:-1], messages[-1:]


def _hh_pair(example: dict[str, Any], index: int) -> dict[str, Any]:
    prompt, chosen = _split_hh(example["chosen"], index, "chosen")
    rejected_prompt, rejected = _split_hh(example["rejected"], index, "rejected")
    if rejected_prompt != prompt:
        common = min(len(prompt), len(rejected_prompt))
        differs_at = next((i for i in range(common) if prompt[i] != rejected_prompt[i]), common)
        fail(
            index,
            "rejected",
            f"the dialogue before the last assistant turn differs from `chosen`'s from message {differs_at} on, so "
            "the pair does not answer the same prompt",
            "Fix or drop the pair (--drop_invalid, or `drop_invalid=True`, drops such pairs).",
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
    drop_invalid: bool = False,
) -> Dataset:
    """Map ratings on a bounded scale ``(low, high)`` to scores in [0, 1], linearly, the best end scoring 1.0.

    ``score = (rating - low) / (high - low)``, or ``(high - rating) / (high - low)`` with ``higher_is_better=False``
    (e.g. a 0-4 harmfulness rating). With ``positive_at``, ratings at or beyond it in the better direction score
    exactly 1.0, so the trainers count them as positives (``score >= positive_threshold``, default 1.0). For example
    1-5 stars with ``positive_at=4``: 1 -> 0.0, 2 -> 0.25, 3 -> 0.5, 4 and 5 -> 1.0.

    The rating column is replaced by ``score_column``. Ratings that are not finite numbers inside the scale raise a
    ValueError naming the row, or with ``drop_invalid=True`` are dropped, with a warning that counts them.
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
            fail(
                index,
                rating_column,
                f"the rating {rating!r} is not a number inside the scale {tuple(scale)}",
                "Fix or drop the row, or widen `scale` (--rating_scale).",
            )
        if positive_at is not None and (rating >= positive_at if higher_is_better else rating <= positive_at):
            return {score_column: 1.0}
        return {score_column: ((rating - low) if higher_is_better else (high - rating)) / (high - low)}

    if drop_invalid:
        dataset = drop_invalid_rows(dataset, to_score, f"ratings in `{rating_column}`")
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
        fail(index, column, "expected a non-empty list of messages", "Give each row its conversation.")
    converted = []
    for message in messages:
        role = (message.get("role") or message.get("from")) if isinstance(message, dict) else None
        content = (message.get("content") or message.get("value") or "") if isinstance(message, dict) else None
        if role not in _ROLES or not isinstance(content, str):
            fail(
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
        fail(
            index,
            column,
            f"the last message is the {messages[-1]['role']}'s, not the assistant's",
            "End each conversation with the assistant reply to train on.",
        )
    if len(messages) < 2:
        fail(index, column, "there is no prompt before the assistant reply", "Add the user message it answers.")
    if not messages[-1]["content"].strip():
        fail(index, column, "the assistant reply is empty", "Drop the row or fill in the reply.")
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
        return row | {"label": check_label(example[label_column], index, label_column)}

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
        normalise_pointwise(example | convert(example, index), index, "binary", "label")

    return check


def _reply(message: Any, index: int, column: str) -> list[dict[str, str]]:
    """``chosen`` / ``rejected`` of a ShareGPT preference row: one assistant message, as a one-message list."""
    if not isinstance(message, dict):
        fail(
            index,
            column,
            f"expected one message ({{from, value}} or {{role, content}}), got {describe(message)}",
            "Give the reply as one message dict.",
        )
    reply = _chatml([message], index, column)
    if reply[0]["role"] != "assistant":
        fail(index, column, f"the reply is the {reply[0]['role']}'s, not the assistant's", "Use `from: gpt`.")
    return reply


def _system(example: dict[str, Any], index: int) -> list[dict[str, str]]:
    system = example.get("system")
    if system is not None and not isinstance(system, str):
        fail(index, "system", f"expected a string, got {describe(system)}", "Give the system prompt as text.")
    return [{"role": "system", "content": system}] if system else []


def _sharegpt_pair(example: dict[str, Any], index: int) -> dict[str, Any]:
    column = "conversations" if "conversations" in example else "messages"
    prompt = _chatml(example[column], index, column)
    if prompt[-1]["role"] != "user":
        fail(
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
            fail(index, "history", f"turn {turn} is not a [user, assistant] pair of strings", "Fix or drop it.")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return messages


def _alpaca_pair(example: dict[str, Any], index: int) -> dict[str, Any]:
    texts = {column: example.get(column) or "" for column in ("instruction", "input")}
    for column, value in (texts | {side: example[side] for side in ("chosen", "rejected")}).items():
        if not isinstance(value, str):
            fail(index, column, f"expected a string, got {describe(value)}", "Give the column as text.")
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
        check_text(example, index, column)
    check_same_kind(example, index, ("prompt", "completion"))


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


# ----------------------------------------------------------------------------------------------------------------
# Any format: detection and conversion
# ----------------------------------------------------------------------------------------------------------------
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
        label_column = pointwise_columns(columns)
        score_type = score_type or infer_score_type(columns)
        return lambda example, index: normalise_pointwise(example, index, score_type, label_column)
    if data_format == "kto":
        return _kto_check(_kto_converter(columns))
    if data_format == "pairwise":
        _need_columns(dataset, ("chosen", "rejected"), "pairwise")
        return check_pairwise_row
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
    dataset: Dataset,
    data_format: str = "auto",
    drop_invalid: bool = False,
    score_type: str | None = None,
    report: dict[str, Any] | None = None,
) -> Dataset:
    """Rows of ``data_format`` (one of `DATA_FORMATS`; ``auto`` detects it) as point-wise rows, checked row by row
    as the converters and the trainers will check them (``score_type`` as the trainer's, inferred when None).

    A bad row raises a ValueError that names the format the rows were read as, the row, the column and the fix;
    with ``drop_invalid=True`` bad rows are dropped instead, and a warning counts them by reason. Point-wise rows
    are returned unchanged. ``report``, when given, receives the ``format`` the rows were read as and the number of
    rows ``dropped``.
    """
    if data_format not in DATA_FORMATS:
        raise ValueError(f"Unknown data format {data_format!r}: use one of {list(DATA_FORMATS)}.")
    if len(dataset) == 0:
        raise ValueError(f"The dataset has no rows. {POINTWISE_FORMAT_HELP}")
    check_column_types(dataset)
    data_format = detect_format(dataset) if data_format == "auto" else data_format
    try:
        check = _row_check(dataset, data_format, score_type)
        if report is not None:
            report |= {"format": data_format, "dropped": 0}
        if drop_invalid:
            rows = len(dataset)
            dataset = drop_invalid_rows(dataset, check, FORMAT_NAMES[data_format])
            if report is not None:
                report["dropped"] = rows - len(dataset)
        else:
            for index, example in enumerate(dataset):
                check(example, index)
        return _convert(dataset, data_format)
    except ValueError as error:
        if str(error).startswith(FORMAT_NAMES[data_format]):
            raise
        raise ValueError(f"Read as {FORMAT_NAMES[data_format]}: {error}") from error
