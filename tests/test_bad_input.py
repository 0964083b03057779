"""Bad input gets a clear error naming the row, the column and the fix; nothing is dropped silently or made NaN."""

import logging
import math

import pytest
from bad_input_cases import BEGIN, CASES, END, README, readme_with, run_case, table
from datasets import Dataset

from trl_ulma import PointwiseDPOConfig, PointwiseDPOTrainer, ULMAConfig, ULMATrainer
from trl_ulma.data import chat_template_arguments, to_pointwise
from trl_ulma.files import load_data
from trl_ulma.formats import convert_to_pointwise
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


# ---------------------------------------------------------------------------------------------------------------
# Through the command line: one line, a non-zero exit code, no traceback (the README's table)
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def outcomes(model_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bad-input")
    return [(case, *run_case(case, workdir, model_dir)) for case in CASES]


@pytest.mark.parametrize("index", range(len(CASES)), ids=[case.input for case in CASES])
def test_cli_bad_input_ends_with_one_line(index, outcomes):
    case, code, line = outcomes[index]
    assert code == case.exit_code
    assert case.expected in line and line.startswith("trl-ulma ulma: error: ")


def test_readme_bad_input_table_is_current(outcomes):
    """Regenerate it with `python tests/bad_input_cases.py`."""
    readme = README.read_text()
    assert BEGIN in readme and END in readme
    assert readme_with(table(outcomes), readme) == readme


# ---------------------------------------------------------------------------------------------------------------
# Types are checked before any coercion; rows that would train silently wrong are refused
# ---------------------------------------------------------------------------------------------------------------
def test_mixed_types_in_a_dataset_are_refused():
    rows = [{"prompt": "p", "completion": "c", "score": value} for value in (0.5, "0.5")]
    with pytest.raises(ValueError, match=r"Column `score` mixes value types"):
        to_pointwise(Dataset.from_list(rows, on_mixed_types="use_json"), "continuous")


def test_mixed_types_in_a_json_file_name_the_row(tmp_path):
    path = tmp_path / "data.json"
    path.write_text('[{"prompt": "p", "completion": "c", "label": 1}, {"prompt": "p", "completion": "d", "label": 0},'
                    ' {"prompt": "p", "completion": "e", "label": "1"}]')
    with pytest.raises(ValueError, match=r"Row 2, column `label`: a string among number values"):
        load_data(str(path))


def test_strings_in_a_score_column_are_named_as_strings():
    rows = [{"prompt": "p", "completion": "c", "score": "0.5"}]
    with pytest.raises(ValueError, match=r"Row 0, column `score`: scores must be numbers, got the string '0.5'"):
        to_pointwise(Dataset.from_list(rows), "continuous")


@pytest.mark.parametrize(
    "rows, pattern",
    [
        ([{"prompt": "Q", "chosen": " A", "rejected": " B"}, {"prompt": "Q", "chosen": " A", "rejected": " A"}],
         r"Row 1, column `rejected`: `chosen` and `rejected` are the same"),
        ([{"prompt": [{"role": "robot", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Yo"}],
           "label": True}], r"Row 0, column `prompt`: message 0 has role 'robot'. .*system, user, assistant, tool"),
        ([{"prompt": "  ", "completion": " A", "label": True}], r"Row 0, column `prompt`: the prompt is empty"),
        ([{"prompt": [{"role": "user", "content": "Hi"}], "completion": " A", "label": True}],
         r"Row 0, column `completion`: `completion` is text but the rest of the row is messages"),
        ([{"prompt": "Q", "completion": " A", "score": None}], r"Row 0, column `score`: the score is missing"),
        ([{"prompt": "Q", "completion": " A", "label": None}], r"Row 0, column `label`: the label is missing"),
        ([{"chosen": "The sky", "rejected": "Blue sea"}], r"share no prefix, so there is no prompt"),
    ],
)
def test_rows_that_would_train_silently_wrong_raise(rows, pattern):
    with pytest.raises(ValueError, match=pattern):
        to_pointwise(Dataset.from_list(rows), "binary")
    with pytest.raises(ValueError, match=pattern):
        convert_to_pointwise(Dataset.from_list(rows))


def test_chat_template_columns_reach_the_chat_template():
    chat = {
        "prompt": [{"role": "user", "content": "Weather?"}],
        "completion": [{"role": "assistant", "content": "Sun"}],
    }
    rows = [
        chat | {"label": True, "tools": '[{"name": "weather"}]', "chat_template_kwargs": {"enable_thinking": False}},
        chat | {"label": False, "tools": None, "chat_template_kwargs": {"enable_thinking": None}},
    ]
    out = to_pointwise(Dataset.from_list(rows), "binary")
    assert chat_template_arguments(out[0]) == {"tools": [{"name": "weather"}], "enable_thinking": False}
    assert chat_template_arguments(out[1]) == {}  # Arrow's None for a key only other rows have is left out
    with pytest.raises(ValueError, match=r"Row 0, column `tools`: the text is not JSON"):
        to_pointwise(Dataset.from_list([chat | {"label": True, "tools": "[{"}]), "binary")


def test_beta_zero_is_refused():
    with pytest.raises(ValueError, match=r"`beta` must be > 0"):
        ULMAConfig(output_dir="x", use_cpu=True, beta=0.0)
