"""The experiment: data loading and splitting, config checks, and the tiny config end to end with resume."""

import gzip
import json
import math
from pathlib import Path

import pytest
import yaml
from datasets import Dataset

from trl_ulma import experiment
from trl_ulma.baselines import prompt_key
from trl_ulma.experiment import (
    METHODS,
    load_config,
    load_rows,
    reference_answers,
    replace_positives,
    run_experiment,
    split_by_prompt,
)
from trl_ulma.testing import toy_dataset


EXPERIMENTS = Path(__file__).parent.parent / "experiments"


def prompts(rows):
    return {prompt_key(p) for p in rows["prompt"]}


def test_split_by_prompt_never_overlaps():
    rows = toy_dataset(40)  # 20 prompts, two rows each
    train, held_out = split_by_prompt(rows, eval_prompts=5, seed=1)
    assert len(prompts(held_out)) == 5 and len(prompts(train)) == 15
    assert not prompts(train) & prompts(held_out)
    assert len(train) + len(held_out) == 40
    assert split_by_prompt(rows, 5, seed=1)[1]["prompt"] == held_out["prompt"]  # deterministic
    assert split_by_prompt(rows, 5, seed=2)[1]["prompt"] != held_out["prompt"]
    train, held_out = split_by_prompt(rows, eval_prompts=0.25, seed=0, train_prompts=4)
    assert len(prompts(held_out)) == 5 and len(prompts(train)) == 4 and len(train) == 8
    with pytest.raises(ValueError, match="must leave held-out and training prompts"):
        split_by_prompt(rows, eval_prompts=20)


def test_reference_answers_take_the_best_positive():
    rows = Dataset.from_list(
        [
            {"prompt": "a", "completion": " good", "score": 1.0},
            {"prompt": "a", "completion": " better", "score": 2.0},
            {"prompt": "a", "completion": " bad", "score": 0.0},
            {"prompt": "b", "completion": " bad", "score": 0.0},
        ]
    )
    assert reference_answers(rows) == [{"prompt": "a", "completion": " better"}]


def test_replace_positives_with_demonstrations():
    rows = toy_dataset(8)  # prompts 0-3, a positive then a negative each
    demonstrations = Dataset.from_list(
        [
            {"prompt": rows[0]["prompt"], "completion": " A golden answer."},
            {"prompt": rows[4]["prompt"], "completion": " Another golden answer."},
            {"prompt": "an unknown prompt", "completion": " Unused."},
        ]
    )
    replaced, count = replace_positives(rows, demonstrations)
    assert count == 2
    expected = list(rows["completion"])
    expected[0], expected[4] = " A golden answer.", " Another golden answer."
    assert replaced["completion"] == expected  # negatives, and positives without a demonstration, are kept
    assert replaced["label"] == rows["label"]
    labelled = demonstrations.map(lambda row, i: {"label": i == 0}, with_indices=True)  # only its positives count
    assert replace_positives(rows, labelled)[1] == 1


def test_load_rows_from_files(tmp_path):
    hh = tmp_path / "hh.jsonl.gz"
    with gzip.open(hh, "wt") as file:
        for answer in ("Sure.", "Here you go."):
            pair = {"chosen": f"\n\nHuman: hi\n\nAssistant: {answer}", "rejected": "\n\nHuman: hi\n\nAssistant: No."}
            file.write(json.dumps(pair) + "\n")
    rows = load_rows({"source": "hh", "path": str(hh)})
    assert rows["label"] == [True, True, False, False]
    assert rows[0]["prompt"] == [{"role": "user", "content": "hi"}]
    assert rows[0]["completion"] == [{"role": "assistant", "content": "Sure."}]

    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps([{"prompt": "Q:", "chosen": " yes", "rejected": " no"}]))
    assert load_rows({"source": "file", "path": str(pairs)}).to_list() == [
        {"prompt": "Q:", "completion": " yes", "label": True},
        {"prompt": "Q:", "completion": " no", "label": False},
    ]
    kto = tmp_path / "kto.jsonl"
    kto.write_text(
        json.dumps(
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "label": False}
        )
        + "\n"
    )
    assert load_rows({"source": "file", "path": str(kto)})[0]["label"] is False
    with pytest.raises(ValueError, match="`data.source`"):
        load_rows({"source": "hub"})


@pytest.mark.parametrize("name", ["tiny", "hh-harmless-small", "golden-style"])
def test_shipped_configs_are_valid(name):
    config = load_config(EXPERIMENTS / f"{name}.yaml")
    assert set(config["methods"]) == set(METHODS)  # every method of the comparison


def test_config_errors(tmp_path):
    def check(config, match):
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        with pytest.raises(ValueError, match=match):
            load_config(path)

    model = {"tiny": {}}
    check({"model": model, "epochs": 3}, r"Unknown config keys \['epochs'\]")
    check({"model": model, "methods": {"ppo": {}}}, r"Unknown methods \['ppo'\]")
    check({"model": model, "methods": {"rlhf": {}}}, "select both")
    check({"model": model, "training": {"learning_rat": 1.0}}, "fields of no method's TRL config")
    check({"model": {"tiny": {}, "path": "x"}}, "exactly one of")
    check({"model": model, "evaluation": {"max_tokens": 3}}, r"Unknown `evaluation` keys \['max_tokens'\]")


@pytest.mark.slow
def test_tiny_experiment_end_to_end_and_resume(tmp_path, monkeypatch):
    result = run_experiment(EXPERIMENTS / "tiny.yaml", output_dir=tmp_path)
    policies = [m for m in METHODS if m != "reward_model"]
    metrics = ["perplexity", "judge_score", "win_rate"] + (
        ["toxicity_rate"] if experiment.load_toxicity_classifier() else []
    )
    assert list(result["results"]) == policies
    for method in policies:
        assert sorted(result["results"][method]) == sorted(metrics), method
        assert all(math.isfinite(value) for value in result["results"][method].values()), method
        assert 1 < result["results"][method]["perplexity"] < 1000
    table = Path(result["files"]["table"]).read_text().splitlines()
    assert len(table[0].split("|")) == len(metrics) + 3  # method + metrics, between outer pipes
    assert [line.split("|")[1].strip() for line in table[2 : 2 + len(policies)]] == policies
    assert not any("n/a" in line for line in table)
    assert json.loads(Path(result["files"]["json"]).read_text())["results"] == result["results"]
    assert Path(result["files"]["plot"]).stat().st_size > 0

    # Re-run after losing ULMA's output: only ULMA is trained and evaluated again
    (tmp_path / "ulma" / experiment.FINISHED).unlink()
    trained, evaluated = [], []
    for method, (train, config_class) in list(experiment.TRAINERS.items()):

        def counting(*args, _train=train, _method=method, **kwargs):
            trained.append(_method)
            return _train(*args, **kwargs)

        monkeypatch.setitem(experiment.TRAINERS, method, (counting, config_class))
    evaluate_model = experiment.evaluate_model
    monkeypatch.setattr(
        experiment, "evaluate_model", lambda path, *a, **k: evaluated.append(path) or evaluate_model(path, *a, **k)
    )
    again = run_experiment(EXPERIMENTS / "tiny.yaml", output_dir=tmp_path)
    assert trained == ["ulma"]
    assert evaluated == [str(tmp_path / "ulma")]
    assert {m: v for m, v in again["results"].items() if m != "ulma"} == {
        m: v for m, v in result["results"].items() if m != "ulma"
    }

    # Without a toxicity classifier the metric is left out, with a note, and nothing is trained again
    monkeypatch.setattr(experiment, "load_toxicity_classifier", lambda: None)
    trained.clear()
    bare = run_experiment(EXPERIMENTS / "tiny.yaml", output_dir=tmp_path)
    assert trained == []
    assert all(sorted(values) == ["judge_score", "perplexity", "win_rate"] for values in bare["results"].values())
    assert experiment.NO_TOXICITY_NOTE in bare["notes"]
    assert "toxicity" not in Path(bare["files"]["table"]).read_text().splitlines()[0]


def test_file_source_detects_raw_hh_transcripts(tmp_path):
    """A raw HH file given as `source: file` is parsed as HH, not cut by the implicit-prompt prefix rule."""
    path = tmp_path / "hh.jsonl"
    pair = {"chosen": "\n\nHuman: hi\n\nAssistant: Sure.", "rejected": "\n\nHuman: hi\n\nAssistant: Sorry."}
    path.write_text(json.dumps(pair) + "\n")
    rows = load_rows({"source": "file", "path": str(path)})
    assert rows["prompt"] == [[{"role": "user", "content": "hi"}]] * 2
    answers = [[{"role": "assistant", "content": answer}] for answer in ("Sure.", "Sorry.")]
    assert rows["completion"] == answers
