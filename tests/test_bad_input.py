"""Bad input gets a clear error naming the row, the column and the fix; nothing is dropped silently or made NaN."""

import logging
import math

import pytest
from datasets import Dataset

from trl_ulma import PointwiseDPOConfig, PointwiseDPOTrainer, ULMATrainer
from trl_ulma.data import to_pointwise
from trl_ulma.testing import toy_rows


def rows_with(**changes):
    """Four toy rows; ``changes`` maps 'row:column' to a new value (None deletes the column everywhere)."""
    rows = toy_rows(4)
    for where, value in changes.items():
        index, column = where.split(":")
        if index == "*":
            for row in rows:
                row.pop(column) if value is None else row.__setitem__(column, value)
        else:
            rows[int(index)][column] = value
    return rows


def build(rows, make_args, model_dir, tokenizer, trainer_class=ULMATrainer, **overrides):
    return trainer_class(
        model=model_dir, args=make_args(max_steps=1, **overrides), train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )


@pytest.mark.parametrize(
    "rows, pattern",
    [
        (rows_with(**{"*:label": None}), r"neither a `label` nor a `score`"),
        (rows_with(**{"*:score": 0.5}), r"both `label` and `score`"),
        (rows_with(**{"*:completion": None}), r"no `completion` column"),
        ([{**row, "label": [1, 0, 2, 0][i]} for i, row in enumerate(toy_rows(4))],
         r"Row 2, column `label`: labels must be True/False or 0/1, got 2"),
        (rows_with(**{"1:completion": "   "}), r"Row 1, column `completion`: the completion is empty"),
    ],
)
def test_malformed_rows_raise(rows, pattern, make_args, model_dir, tokenizer):
    if rows and rows[0].get("completion", 1) is None:
        rows = [{k: v for k, v in row.items() if k != "completion"} for row in rows]
    with pytest.raises(ValueError, match=pattern):
        build(rows, make_args, model_dir, tokenizer)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_scores_raise(bad):
    rows = [{"prompt": "p", "completion": "c", "score": s} for s in (1.0, 0.2, bad)]
    with pytest.raises(ValueError, match=r"Row 2, column `score`: the score is .*finite"):
        to_pointwise(Dataset.from_list(rows), "continuous")


def test_binary_score_outside_unit_interval_raises():
    rows = [{"prompt": "p", "completion": "c", "score": s} for s in (1.0, 0.0, 3.0)]
    with pytest.raises(ValueError, match=r"Row 2, column `score`: binary scores are probabilities in \[0, 1\], got 3.0. Rescale"):
        to_pointwise(Dataset.from_list(rows), "binary")
    assert to_pointwise(Dataset.from_list(rows), "continuous")["score"] == [1.0, 0.0, 3.0]


def test_soft_and_bool_labels_become_float_scores():
    for labels in ([True, False, True], [1, 0, 1], [1.0, 0.0, 1.0]):
        rows = [{"prompt": "p", "completion": "c", "label": v, "extra": i} for i, v in enumerate(labels)]
        out = to_pointwise(Dataset.from_list(rows), "binary")
        assert out["score"] == [1.0, 0.0, 1.0]
        assert "label" not in out.column_names and out["extra"] == [0, 1, 2]


def test_empty_conversational_completion_raises():
    rows = [{"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": ""}],
             "label": True}]
    with pytest.raises(ValueError, match=r"Row 0, column `completion`: the completion is empty"):
        to_pointwise(Dataset.from_list(rows), "binary")


def test_empty_rejected_in_a_pair_raises():
    pairs = {"prompt": ["a", "b"], "chosen": ["x", "y"], "rejected": ["z", ""]}
    with pytest.raises(ValueError, match=r"Row 1, column `rejected`"):
        to_pointwise(Dataset.from_dict(pairs), "binary")


def test_empty_dataset_raises():
    with pytest.raises(ValueError, match="no rows"):
        to_pointwise(Dataset.from_dict({"prompt": [], "completion": [], "label": []}), "binary")


def test_pairs_with_a_label_column_are_ambiguous():
    pairs = {"prompt": ["a"], "chosen": ["x"], "rejected": ["z"], "label": [True]}
    with pytest.raises(ValueError, match=r"paired columns .* and a `label` column"):
        to_pointwise(Dataset.from_dict(pairs), "binary")


@pytest.mark.parametrize(
    "option, value", [("loss_type", "ipo"), ("ld_alpha", 0.5), ("use_weighting", True), ("label_smoothing", 0.1)]
)
def test_pairwise_only_options_are_refused(option, value, make_args, model_dir, tokenizer):
    with pytest.raises(ValueError, match=rf"`{option}=.*pairwise DPO option"):
        build(toy_rows(4), make_args, model_dir, tokenizer, PointwiseDPOTrainer, **{option: value})


def test_bad_config_values_are_refused():
    with pytest.raises(ValueError, match="score_type"):
        PointwiseDPOConfig(output_dir="x", use_cpu=True, score_type="ordinal")
    with pytest.raises(ValueError, match="reduction"):
        PointwiseDPOConfig(output_dir="x", use_cpu=True, reduction="sum")


def test_long_prompts_are_reported_and_dropped(make_args, model_dir, tokenizer, caplog):
    rows = toy_rows(8)
    rows[0]["prompt"] = rows[1]["prompt"] = "word " * 200  # far beyond max_length
    rows[2]["completion"] = " word" * 200  # kept, but truncated
    with caplog.at_level(logging.WARNING):
        trainer = build(rows, make_args, model_dir, tokenizer, max_length=64)
    assert len(trainer.train_dataset) == 6
    assert "of 8 rows, 2 are dropped" in caplog.text and "1 are truncated" in caplog.text
    trainer.train()
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])


@pytest.mark.parametrize("label, message", [(True, "supervised fine-tuning"), (False, "point-wise DPO term on negatives")])
def test_ulma_warns_when_a_group_is_missing(label, message, make_args, model_dir, tokenizer, caplog):
    rows = [row | {"label": label} for row in toy_rows(8)]
    with caplog.at_level(logging.WARNING):
        trainer = build(rows, make_args, model_dir, tokenizer)
    assert caplog.text.count(message) == 1
    trainer.train()  # degenerate but finite
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])
