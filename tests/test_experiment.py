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
    Experiment,
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


@pytest.mark.parametrize("name", ["tiny", "hh-harmless-small", "golden-style", "hh-harmless-cpu"])
def test_shipped_configs_are_valid(name):
    config = load_config(EXPERIMENTS / f"{name}.yaml")
    runs = {experiment.method_of(name, overrides) for name, overrides in config["methods"].items()}
    if name == "hh-harmless-cpu":  # every method but reward model + RLOO, too slow for its 90 minutes on 2 cores
        assert runs == set(METHODS) - {"reward_model", "rlhf"}
        paper = config["methods"]["ulma_paper"]  # the paper's exact ULMA beside the default
        assert paper == {
            "method": "ulma",
            "beta": 0.1,
            "score_baseline": "none",
            "score_scale": 1.0,
            "preference_balance": None,
        }
        assert config["data"]["judge_prompts"] > 0 and config["data"]["eval_prompts"] >= 100
    else:
        assert runs == set(METHODS)  # every method of the comparison


def test_config_errors(tmp_path):
    def check(config, match):
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        with pytest.raises(ValueError, match=match):
            load_config(path)

    model = {"tiny": {}}
    check({"model": model, "epochs": 3}, r"Unknown config keys \['epochs'\]")
    check({"model": model, "methods": {"ppo": {}}}, r"Unknown methods \['ppo'\]")
    check({"model": model, "methods": {"paper": {"method": "ppo"}}}, r"Unknown methods \['ppo'\]")
    check({"model": model, "methods": {"dpo": {"method": "ulma"}}}, r"`methods.dpo`: a method's own name")
    check({"model": model, "methods": {"rm": {"method": "reward_model"}}}, "the reward model has no variants")
    check({"model": model, "methods": {"rlhf": {}}}, "select both")
    check({"model": model, "methods": {"online": {"method": "rlhf"}}}, "select both")
    check(
        {"model": model, "methods": {"ulma": {"bta": 0.1}}}, r"`methods.ulma`: \['bta'\] are not fields of ULMAConfig"
    )
    check({"model": model, "judge": {"lr": 1.0}}, r"`judge`: \['lr'\] are not fields of RewardConfig")
    check({"model": model, "training": {"learning_rat": 1.0}}, "fields of no method's TRL config")
    check({"model": model, "data": {"judge_prompts": 0}}, "judge_prompts` must be positive")
    check({"model": {"tiny": {}, "path": "x"}}, "exactly one of")
    check({"model": model, "evaluation": {"max_tokens": 3}}, r"Unknown `evaluation` keys \['max_tokens'\]")


def stubbed_experiment(tmp_path, monkeypatch) -> tuple[Experiment, dict]:
    """A small experiment whose trainers only record what they were given (by output folder) and write nothing."""
    config = {
        "model": {"tiny": {"hidden_size": 32}},
        "output_dir": str(tmp_path / "run"),
        "data": {"source": "toy", "rows": 40, "eval_prompts": 4, "judge_prompts": 6, "seed": 0},  # 20 prompts
        "training": {"max_steps": 3, "learning_rate": 1e-3},
        "methods": {"ulma_paper": {"method": "ulma", "beta": 0.5}, "ulma": {}, "base": {}, "sft": {}},
        "judge": {"max_steps": 5},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    seen = {}
    for method, (_, config_class) in list(experiment.TRAINERS.items()):

        def record(model, rows, output_dir, _method=method, **kwargs):
            Path(output_dir).mkdir(parents=True)
            seen[Path(output_dir).name] = (_method, prompts(rows), kwargs)

        monkeypatch.setitem(experiment.TRAINERS, method, (record, config_class))
    return Experiment(path), seen


def test_judge_trains_on_its_own_prompts_and_variants_run_their_method(tmp_path, monkeypatch):
    run, seen = stubbed_experiment(tmp_path, monkeypatch)
    run.train()
    assert list(seen) == ["sft", "ulma_paper", "ulma", "judge"]  # by method, then as configured; the judge last
    assert seen["ulma_paper"][0] == seen["ulma"][0] == "ulma"
    assert seen["ulma_paper"][2]["beta"] == 0.5 and "method" not in seen["ulma_paper"][2]
    assert "beta" not in seen["ulma"][2]
    train, judge, held_out = prompts(run.train_rows), prompts(run.judge_rows), prompts(run.eval_rows)
    assert (len(train), len(judge), len(held_out)) == (10, 6, 4)
    assert not train & judge and not train & held_out and not judge & held_out
    assert seen["judge"][:2] == ("reward_model", judge) and seen["judge"][2]["seed"] == 1  # seeded apart
    assert all(seen[name][1] == train for name in ("sft", "ulma", "ulma_paper"))
    assert len(run.pairs) == 4  # a positive against a negative for each held-out prompt


def test_resumed_run_estimates_only_what_is_left_to_train(tmp_path, monkeypatch):
    """A re-run skips finished outputs, and its time-left estimate counts only the steps it will run."""
    run, seen = stubbed_experiment(tmp_path, monkeypatch)
    first = run.train()
    (run.run_dir / "ulma" / experiment.FINISHED).unlink()
    clocks, clock = [], experiment.Clock
    monkeypatch.setattr(experiment, "Clock", lambda steps, what="": clocks.append(steps) or clock(steps, what))
    seen.clear()
    assert run.train() == first
    assert list(seen) == ["ulma"]
    assert clocks == [[0, 0, 3, 0]]  # sft, ulma_paper, ulma, judge (5 steps, found finished)


def test_judge_prompts_must_leave_training_prompts(tmp_path):
    config = {"model": {"tiny": {}}, "data": {"source": "toy", "rows": 24, "eval_prompts": 2, "judge_prompts": 10}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=r"`data.judge_prompts=10` must leave training prompts: 10 are left after"):
        Experiment(path)


def test_clock_estimates_the_time_left_from_seconds_per_step(monkeypatch):
    now = [10.0]
    monkeypatch.setattr(experiment.time, "monotonic", lambda: now[0])
    clock = experiment.Clock([100, 0, 50, 150], "of training")  # the second job's output was found: 0 steps
    assert clock.left() is None and clock.status() == "0.0 min elapsed"
    now[0] = 130.0
    clock.tick()  # 100 steps in 120 s: 1.2 s a step
    assert clock.left() == pytest.approx(200 * 1.2)
    assert clock.status() == "2.0 min elapsed, about 4.0 min of training left"
    now[0] = 131.0
    clock.tick(timed=False)  # skipped: says nothing of the speed
    assert clock.left() == pytest.approx(200 * 1.2)
    now[0] = 191.0
    clock.tick()  # 50 steps in 60 s
    assert clock.left() == pytest.approx(150 * 180 / 150)
    unknown = experiment.Clock([10, -1])
    now[0] = 200.0
    unknown.tick()
    assert unknown.left() is None  # a job of unknown length is still to run


@pytest.mark.slow
def test_tiny_experiment_end_to_end_and_resume(tmp_path, monkeypatch):
    result = run_experiment(EXPERIMENTS / "tiny.yaml", output_dir=tmp_path)
    policies = [m for m in METHODS if m != "reward_model"] + ["ulma_paper"]
    metrics = ["perplexity", "pair_accuracy", "judge_score", "win_rate_vs_base", "win_rate"] + (
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
    assert result["results"]["base"]["pair_accuracy"] == result["results"]["base"]["win_rate_vs_base"] == 0.5

    # Pair accuracy and win rate against the base model, by hand from the saved per-row log-probs and judge scores
    held_out = Experiment(EXPERIMENTS / "tiny.yaml", output_dir=tmp_path).held_out
    saved = {m: json.loads((tmp_path / m / experiment.EVALUATED).read_text())["details"] for m in ("base", "ulma")}
    wins = []
    for i, better in enumerate(held_out):
        for j, worse in enumerate(held_out):
            if prompt_key(better["prompt"]) == prompt_key(worse["prompt"]) and better["score"] > worse["score"]:
                gain = [saved["ulma"]["row_logps"][k] - saved["base"]["row_logps"][k] for k in (i, j)]
                wins.append(1.0 if gain[0] > gain[1] else 0.5 if gain[0] == gain[1] else 0.0)
    assert len(wins) == 8  # one pair per held-out prompt
    assert result["results"]["ulma"]["pair_accuracy"] == pytest.approx(sum(wins) / len(wins))
    scores = saved["ulma"]["judge_scores"], saved["base"]["judge_scores"]
    beat = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(*scores, strict=True)]
    assert result["results"]["ulma"]["win_rate_vs_base"] == pytest.approx(sum(beat) / len(beat))
    assert "over 8 prompts by up to about ±0.35 (a 95% binomial interval" in Path(result["files"]["table"]).read_text()
    judge = json.loads(Path(result["files"]["json"]).read_text())["judge"]
    assert judge["pairs"] == 8 and 0 <= judge["pair_accuracy"] <= 1
    assert f"Its accuracy on the 8 held-out pairs (the better answer scored higher): {judge['pair_accuracy']:.3f}." in (
        Path(result["files"]["table"]).read_text()
    )

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
    expected = ["judge_score", "pair_accuracy", "perplexity", "win_rate", "win_rate_vs_base"]
    assert all(sorted(values) == expected for values in bare["results"].values())
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
