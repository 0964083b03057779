"""The embedded demo dataset: splits, format, and that the committed file is what the generator writes."""

import runpy
from collections import defaultdict
from importlib.resources import files
from pathlib import Path

import pytest

from trl_ulma.data import to_pointwise
from trl_ulma.demo import load_demo_dataset


ROOT = Path(__file__).resolve().parents[1]


def labels_by_prompt(dataset):
    labels = defaultdict(list)
    for row in dataset:
        labels[row["prompt"][0]["content"]].append(row["label"])
    return labels


def test_split_sizes_and_one_positive_and_one_negative_per_prompt():
    train, test = labels_by_prompt(load_demo_dataset("train")), labels_by_prompt(load_demo_dataset("test"))
    assert (len(train), len(test)) == (222, 48)
    assert 0.15 <= len(test) / (len(train) + len(test)) <= 0.20
    assert not set(train) & set(test)
    for labels in (*train.values(), *test.values()):
        assert sorted(labels) == [False, True]


def test_rows_are_conversational_and_trainer_ready():
    dataset = load_demo_dataset("test")
    assert dataset.column_names == ["prompt", "completion", "label", "category"]
    assert {message["role"] for row in dataset["prompt"] for message in row} == {"user"}
    assert {len(row) for row in dataset["completion"]} == {1}
    assert {row[0]["role"] for row in dataset["completion"]} == {"assistant"}
    assert set(dataset["category"]) == {"how-to", "explain", "writing", "advice", "unsafe"}
    assert to_pointwise(dataset, "binary")["score"] == [float(label) for label in dataset["label"]]


def test_unknown_split_raises():
    with pytest.raises(ValueError, match=r"Unknown split 'validation'.*train, test"):
        load_demo_dataset("validation")


def test_the_committed_file_is_the_generator_output(tmp_path):
    packaged = files("trl_ulma") / "resources" / "demo_pointwise.jsonl"
    runpy.run_path(str(ROOT / "scripts" / "make_demo_dataset.py"))["main"](tmp_path / "demo.jsonl")
    assert (tmp_path / "demo.jsonl").read_bytes() == packaged.read_bytes()
    assert len(packaged.read_bytes()) < 300_000
