"""The reward-function loop: reward functions called and combined as GRPO does, rewards to point-wise rows, the KL
estimate against a hand computation, resuming at each stage, and a short run that raises a toy reward."""

import dataclasses
import importlib.machinery
import itertools
import json
import math
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2ForSequenceClassification
from trl import TrlParser
from trl.trainer.utils import get_config_model_id

from trl_ulma import RewardLoopConfig, ULMAConfig, ULMATrainer, reward_loop, run_reward_loop
from trl_ulma.evaluation import GenerationSettings, generate
from trl_ulma.files import load_data
from trl_ulma.formats import convert_to_pointwise
from trl_ulma.reward_loop import RewardLoopArguments
from trl_ulma.reward_targets import BELOW_ONE, RowsReport, reward_rows
from trl_ulma.rewards import RewardModel, load_reward_funcs, score_completions, vader_sentiment
from trl_ulma.sampling import (
    distinct_ngrams,
    repetition_rate,
    sample_completions,
    sample_completions_vllm,
    sample_kl,
)
from trl_ulma.testing import build_tiny_model


# --------------------------------------------------------------------------------------------------------------------
# Reward functions
# --------------------------------------------------------------------------------------------------------------------
def first(prompts, completions, **kwargs):
    return [1.0, 2.0, None]


def second(prompts, completions, **kwargs):
    return [0.5, None, None]


def test_weighted_sum_over_the_functions_that_apply_and_none_where_none_does():
    # sample 0: 2 * 1.0 - 1 * 0.5; sample 1: only `first` applies: 2 * 2.0; sample 2: no function applies
    rewards = score_completions([first, second], [2.0, -1.0], ["p"] * 3, ["a", "b", "c"], {})
    assert rewards == [1.5, 4.0, None]
    assert score_completions([first, second], None, ["p"] * 3, ["a", "b", "c"]) == [1.5, 2.0, None]


def test_functions_get_the_columns_as_keywords():
    seen = {}

    def spy(prompts, completions, solution, completion_ids, **kwargs):
        seen.update(prompts=prompts, completions=completions, solution=solution, ids=completion_ids, rest=kwargs)
        return [float(len(ids)) for ids in completion_ids]

    columns = {"solution": ["1", "2"], "completion_ids": [[1], [1, 2]]}
    assert score_completions([spy], None, ["p", "q"], ["a", "b"], columns) == [1.0, 2.0]
    assert seen == {"prompts": ["p", "q"], "completions": ["a", "b"], "solution": ["1", "2"], "ids": [[1], [1, 2]],
                    "rest": {}}  # fmt: skip


def test_weight_count_must_match():
    with pytest.raises(ValueError, match=r"^3 reward weights for 2 reward functions"):
        score_completions([first, second], [1.0, 1.0, 1.0], ["p"] * 3, ["a", "b", "c"])


def _one_line_error(funcs, match: str) -> str:
    with pytest.raises(ValueError, match=match) as error:
        score_completions(funcs, None, ["p"] * 3, ["a", "b", "c"])
    assert "\n" not in str(error.value)
    return str(error.value)


def test_wrong_length_names_the_function_and_the_expected_length():
    def short(prompts, completions, **kwargs):
        return [1.0, 2.0]

    message = _one_line_error([first, short], "short")
    assert "test_reward_loop" in message and "returned 2 rewards" in message and "a list of 3" in message


def test_a_raising_function_is_named_with_its_error_on_one_line():
    def broken(prompts, completions, **kwargs):
        raise RuntimeError("no column\n`solution` here")

    message = _one_line_error([first, broken], "broken")
    assert "raised RuntimeError" in message and "no column `solution` here" in message and "3 samples" in message


@pytest.mark.parametrize(
    ("output", "problem"),
    [
        (["1.0", 2.0, 3.0], "returned '1.0' for sample 0"),
        ([1.0, math.nan, 3.0], "returned nan for sample 1"),
        ({"a": 1}, "returned a dict"),
        (2.0, "returned a float"),
    ],
)
def test_a_non_number_is_refused(output, problem):
    def odd(prompts, completions, **kwargs):
        return output

    assert problem in _one_line_error([odd], "odd")


def test_arrays_and_tensors_are_lists_of_numbers():
    def tensor(prompts, completions, **kwargs):
        return torch.tensor([1.0, 0.0, 0.5])

    assert score_completions([tensor], [2.0], ["p"] * 3, ["a", "b", "c"]) == [2.0, 0.0, 1.0]


def test_unknown_name_says_what_is_accepted():
    with pytest.raises(ValueError, match=r"^Unknown reward function 'nope': .*think_format_reward.*dotted") as error:
        load_reward_funcs(["nope"])
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="^No reward"):
        load_reward_funcs([])


def test_trl_reward_names_and_factories():
    think, repetition = load_reward_funcs(["think_format_reward", "get_repetition_penalty_reward"])
    prompts = [[{"role": "user", "content": "q"}]] * 2
    completions = [[{"role": "assistant", "content": f"{answer}yes"}] for answer in ("<think>\nhm\n</think>\n", "")]
    # 3-grams of 1 2 3 1 2 3: 4, of which 3 distinct: 1 - 3/4 = 0.25 times the default max_penalty -1
    columns = {"completion_ids": [[1, 2, 3, 1, 2, 3], [4, 5]]}
    assert score_completions([think, repetition], None, prompts, completions, columns) == [1.0 - 0.25, 0.0]
    with pytest.raises(ValueError, match=r"factory that needs max_completion_len, soft_punish_cache"):
        load_reward_funcs(["get_soft_overlong_punishment"])


def test_dotted_path_imports_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "loop_rewards_here.py").write_text(
        "def shout(prompts, completions, **kwargs):\n    return [float(c.count('!')) for c in completions]\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    (shout,) = load_reward_funcs(["loop_rewards_here.shout"])
    assert score_completions([shout], None, ["p", "p"], ["hi!!", "hi"]) == [2.0, 0.0]
    with pytest.raises(ValueError, match=r"^Cannot import reward function 'loop_rewards_here.whisper': AttributeError"):
        load_reward_funcs(["loop_rewards_here.whisper"])
    with pytest.raises(ValueError, match=r"^Cannot import reward function 'no_such_module_here.f': ModuleNotFound"):
        load_reward_funcs(["no_such_module_here.f"])


def test_vader_sentiment_reads_text_and_messages():
    text = vader_sentiment(["p"] * 2, [" Happy to help, great question!", " I hate this, go away, idiot."])
    messages = vader_sentiment([[]], [[{"role": "assistant", "content": " Happy to help, great question!"}]])
    assert text[0] > 0.5 and text[1] < -0.5 and messages == text[:1]


def test_reward_model_scores_each_sample_as_alone(tmp_path, tokenizer):
    config = build_tiny_model(tokenizer).config
    config.num_labels = 1
    torch.manual_seed(0)
    model = Qwen2ForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    judge = load_reward_funcs([], reward_model_name_or_path=str(tmp_path))[0]
    assert isinstance(judge, RewardModel)
    prompts, completions = ["User: hi\nAssistant:", "User: Can you help me with a poem?\nAssistant:"], [" Sure.", " No"]
    expected = []
    for prompt, completion in zip(prompts, completions, strict=True):  # one sequence, no padding: its last token
        ids = torch.tensor([tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]])
        expected.append(model(input_ids=ids).logits[0, 0].item())
    assert score_completions([judge], None, prompts, completions) == pytest.approx(expected, abs=1e-5)
    assert expected[0] != pytest.approx(expected[1], abs=1e-4)


# --------------------------------------------------------------------------------------------------------------------
# Rewards to point-wise rows
# --------------------------------------------------------------------------------------------------------------------
# The module docstring's example: A 0.8, 0.2, -0.4; B 0.6, 0.6, 0.0 (tied best); C constant; D no reward
PROMPTS = ["A"] * 3 + ["B"] * 3 + ["C"] * 2 + ["D"]
REWARDS = [0.8, 0.2, -0.4, 0.6, 0.6, 0.0, 0.5, 0.5, None]
COMPLETIONS = ["a1", "a2", "a3", "b1", "b2", "b3", "c1", "c2", "d1"]


def _mapped(r: float) -> float:  # by the kept rows' min -0.4 and max 0.8
    return (r + 0.4) / 1.2


@pytest.mark.parametrize(
    ("positives", "scores", "count"),
    [
        ("best", [1.0, 0.5, 0.0, 1.0, _mapped(0.6), _mapped(0.0)], 2),
        ("above_mean", [1.0, 0.5, 0.0, 1.0, 1.0, _mapped(0.0)], 3),  # 0.2 is A's mean: not above it
        ("none", [BELOW_ONE, 0.5, 0.0, _mapped(0.6), _mapped(0.6), _mapped(0.0)], 0),
    ],
)
def test_reward_rows_by_hand(positives, scores, count):
    rows, report = reward_rows(PROMPTS, COMPLETIONS, REWARDS, positives, extra_columns={"n": list(range(9))})
    assert [row["completion"] for row in rows] == ["a1", "a2", "a3", "b1", "b2", "b3"]
    assert [row["score"] for row in rows] == pytest.approx(scores, abs=1e-12)
    assert [row["reward"] for row in rows] == REWARDS[:6] and [row["n"] for row in rows] == list(range(6))
    assert sum(row["score"] >= 1.0 for row in rows) == count
    assert max(row["score"] for row in rows if row["score"] < 1.0) <= BELOW_ONE
    assert report == RowsReport(rows=6, positives=count, skipped_none=1, constant_prompts=1, constant_rows=2,
                                reward_min=-0.4, reward_max=0.8)


def test_the_first_of_tied_best_samples_is_the_positive():
    rows, _ = reward_rows(["x"] * 3, ["first", "second", "low"], [1.0, 1.0, 0.0], "best")
    assert [row["score"] for row in rows] == [1.0, BELOW_ONE, 0.0]


def test_constant_single_and_empty_samples_are_dropped_and_counted():
    prompts = ["x", "x", "y", "z", "z", "z"]
    rows, report = reward_rows(prompts, ["a", "b", "c", "d", " ", "f"], [0.3, 0.3, 1.0, 2.0, 9.0, 1.0])
    assert [row["completion"] for row in rows] == ["d", "f"] and [row["score"] for row in rows] == [1.0, 0.0]
    assert report == RowsReport(rows=2, positives=1, skipped_empty=1, constant_prompts=2, constant_rows=3,
                                reward_min=1.0, reward_max=2.0)
    assert reward_rows(["x", "x"], ["a", "b"], [None, None]) == ([], RowsReport(skipped_none=2))


def test_reward_rows_refuses_bad_arguments():
    with pytest.raises(ValueError, match="`positives` must be one of"):
        reward_rows(["x"], ["a"], [1.0], "top")
    with pytest.raises(ValueError, match="^1 rewards for 2 prompts"):
        reward_rows(["x", "x"], ["a", "b"], [1.0])
    with pytest.raises(ValueError, match="Extra column `score`"):
        reward_rows(["x"], ["a"], [1.0], extra_columns={"score": [1]})


# --------------------------------------------------------------------------------------------------------------------
# Samples, KL and fluency
# --------------------------------------------------------------------------------------------------------------------
def _hand_logps(model, prompt_ids: list[int], completion_ids: list[int]) -> float:
    """Sum of log p(token) over the completion, from a plain forward of the one sequence."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logps = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    start = len(prompt_ids)
    return sum(logps[start + i - 1, token].item() for i, token in enumerate(completion_ids))


def test_sample_kl_against_a_hand_computation(model_dir, tokenizer):
    policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    reference = build_tiny_model(tokenizer, seed=1).eval()
    prompt_ids = [[5, 6, 7], [8, 9], [10, 11, 12, 13, 14]]
    completion_ids = [[20, 21, 22, 23], [30, tokenizer.eos_token_id], [40]]  # different lengths: padded batches
    mean, values = sample_kl(policy, reference, tokenizer, prompt_ids, completion_ids, batch_size=2)
    pairs = list(zip(prompt_ids, completion_ids, strict=True))
    expected = [_hand_logps(policy, p, c) - _hand_logps(reference, p, c) for p, c in pairs]
    assert values == pytest.approx(expected, abs=1e-4)
    assert mean == pytest.approx(sum(expected) / 3, abs=1e-4)
    assert min(abs(v) for v in expected) > 1e-3  # the two models differ on every sample
    same_mean, same = sample_kl(policy, policy, tokenizer, prompt_ids, completion_ids, batch_size=2)
    assert same == [0.0, 0.0, 0.0] and same_mean == 0.0


def test_samples_keep_the_generated_ids(model_dir, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompts = ["User: hi\nAssistant:", "User: Can you help me with a poem?\nAssistant:"] * 3
    settings = GenerationSettings(max_new_tokens=6, batch_size=4, do_sample=True, seed=3)
    samples = sample_completions(model, tokenizer, prompts, settings)
    assert [s.text for s in samples] == generate(model, tokenizer, prompts, settings)  # `generate` keeps the texts
    ids = tokenizer(prompts[1], return_tensors="pt")["input_ids"]  # greedy, alone: what `model.generate` gives
    alone = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                           eos_token_id=tokenizer.eos_token_id)[0, ids.size(1):].tolist()
    greedy = GenerationSettings(max_new_tokens=6, batch_size=4)
    assert sample_completions(model, tokenizer, prompts, greedy)[1].completion_ids == alone
    assert samples == sample_completions(model, tokenizer, prompts, settings)  # reproducible
    for prompt, s in zip(prompts, samples, strict=True):
        assert s.prompt_ids == tokenizer(prompt)["input_ids"] and 1 <= len(s.completion_ids) <= 6
        assert s.text == tokenizer.decode(s.completion_ids, skip_special_tokens=True)
        assert s.eos == (s.completion_ids[-1] == tokenizer.eos_token_id)
        assert tokenizer.eos_token_id not in s.completion_ids[:-1]


def test_repetition_and_distinct_ngrams_by_hand():
    ids = [[1, 2, 3, 1, 2, 3], [5, 5], [7, 8, 9]]
    # 3-grams: sample 0 has 4, 3 distinct (1 repeat); sample 1 none; sample 2 one
    assert repetition_rate(ids) == pytest.approx((1 / 4 + 0 + 0) / 3)
    assert distinct_ngrams(ids) == pytest.approx(4 / 5)
    assert distinct_ngrams([[1, 2]]) == 1.0 and repetition_rate([[1, 2]]) == 0.0


# --------------------------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"trainer": "dpo"}, "`trainer` must be one of"),
        ({"reference": "best"}, "`reference` must be one of"),
        ({"positives": "all"}, "`positives` must be one of"),
        ({"num_generations": 1}, "`num_generations` must be an integer >= 2"),
        ({"rounds": 0}, "`rounds` must be an integer >= 1"),
        ({"temperature": 0.0}, "`temperature` must be > 0"),
        ({"top_p": 1.5}, r"`top_p` must be in \(0, 1\]"),
        ({"eval_prompts": -1}, "`eval_prompts` must be"),
        ({"training": {"learning_rat": 1e-3}}, "`training` option 'learning_rat' is not a ULMAConfig field"),
        ({"training": {"output_dir": "x"}}, "`training` option 'output_dir'"),
        ({"trainer": "pointwise_dpo", "training": {"sft_loss_type": "nll"}}, "not a PointwiseDPOConfig field"),
    ],
)
def test_config_validation(options, match):
    with pytest.raises(ValueError, match=match) as error:
        RewardLoopConfig(output_dir="out", **options)
    assert "\n" not in str(error.value)


def test_training_args_defaults_and_overrides(tmp_path):
    args = RewardLoopConfig(output_dir="out", trainer="pointwise_dpo", training={"beta": 0.3}).training_args(tmp_path)
    assert (args.score_baseline, args.beta, args.report_to, args.save_strategy) == ("prompt", 0.3, [], "no")
    assert args.output_dir == str(tmp_path)
    ulma = RewardLoopConfig(output_dir="out", training={"score_baseline": "none"}).training_args(tmp_path)
    assert isinstance(ulma, ULMAConfig) and ulma.score_baseline == "none"
    if not torch.cuda.is_available():
        assert args.use_cpu and not args.bf16
    # a round's reward range: the reward's own units, on summed log-probs, unless `training` says otherwise
    fitted = RewardLoopConfig(output_dir="out", trainer="pointwise_dpo").training_args(tmp_path, reward_unit=1.5)
    assert (fitted.score_scale, fitted.length_normalize) == (1.5, False)
    given = RewardLoopConfig(output_dir="out", training={"score_scale": "auto", "length_normalize": True})
    assert (given.training_args(tmp_path, 1.5).score_scale, given.training_args(tmp_path, 1.5).length_normalize) == (
        "auto", True)


def test_positives_default_to_the_best_for_ulma_and_none_for_pointwise_dpo():
    assert RewardLoopConfig(output_dir="out").positives == "best"
    assert RewardLoopConfig(output_dir="out", trainer="pointwise_dpo").positives == "none"
    assert RewardLoopConfig(output_dir="out", trainer="pointwise_dpo", positives="best").positives == "best"


def test_arguments_parse_as_trl_flags():
    (arguments,) = TrlParser((RewardLoopArguments,)).parse_args_into_dataclasses(
        ["--reward_funcs", "think_format_reward", "my.reward", "--reward_weights", "1", "0.5",
         "--num_generations", "8", "--trainer", "pointwise_dpo", "--eval_fraction", "0.25",
         "--generation_batch_size", "12"]
    )  # fmt: skip
    assert arguments.reward_funcs == ["think_format_reward", "my.reward"] and arguments.reward_weights == [1.0, 0.5]
    config = arguments.to_config("out", {"beta": 0.2})
    assert (config.num_generations, config.trainer, config.eval_prompts, config.training) == (
        8,
        "pointwise_dpo",
        0.25,
        {"beta": 0.2},
    )
    assert config.generation_batch_size == 12
    default = RewardLoopArguments().to_config("out")
    assert default.eval_prompts is None
    assert default.generation_batch_size == RewardLoopConfig("out").generation_batch_size


# --------------------------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------------------------
TOPICS = ["the weather", "a recipe", "my homework", "a poem", "the news", "my garden", "a trip", "a bug"]
PROMPT_TEXTS = [f"User: Can you help me with {topic}?\nAssistant:" for topic in TOPICS]
EVAL_TOPICS = ["cats", "rain", "soup", "maths", "music", "tea"]
EVAL_TEXTS = [f"User: Tell me about {topic}.\nAssistant:" for topic in EVAL_TOPICS]
TRAINING = {
    "max_steps": 4,
    "per_device_train_batch_size": 8,
    "learning_rate": 1e-2,
    "gradient_checkpointing": False,
    "logging_steps": 100,
    "disable_tqdm": True,
}


class LetterReward:
    """1.0 for a completion that contains the letter "e", else 0.0; counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, prompts, completions, **kwargs):
        self.calls += 1
        return [1.0 if "e" in c else 0.0 for c in completions]


def _config(tmp_path, **options) -> RewardLoopConfig:
    return RewardLoopConfig(
        output_dir=str(tmp_path / "loop"), max_new_tokens=6, generation_batch_size=16, training=TRAINING, **options
    )


def _run(model_dir, tokenizer, config, reward, eval_prompts=True, **kwargs):
    return run_reward_loop(
        model_dir,
        Dataset.from_dict({"prompt": PROMPT_TEXTS}),
        reward,
        config=config,
        tokenizer=tokenizer,
        eval_prompts=Dataset.from_dict({"prompt": EVAL_TEXTS}) if eval_prompts else None,
        **kwargs,
    )


def _mtimes(folder: Path) -> dict[str, int]:
    files = ["samples.jsonl", "scored.jsonl", "scoring.json", "model/model.safetensors", "metrics.json"]
    return {name: (folder / name).stat().st_mtime_ns for name in files}


@pytest.mark.slow
def test_resume_at_each_stage(tmp_path, model_dir):
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    reward = LetterReward()
    out = tmp_path / "loop"
    _run(model_dir, tokenizer, _config(tmp_path, rounds=1), reward)
    assert reward.calls == 3  # round 0 held-out, round 1 samples, round 1 held-out
    round_1 = _mtimes(out / "round_1")
    first_rounds = json.loads((out / "results.json").read_text())["rounds"]

    result = _run(model_dir, tokenizer, _config(tmp_path, rounds=2), reward)  # more rounds: goes on
    assert reward.calls == 3 + 2 and _mtimes(out / "round_1") == round_1
    assert result["rounds"][:2] == first_rounds and [m["round"] for m in result["rounds"]] == [0, 1, 2]
    assert result["model"] == str(out / "round_2" / "model")
    samples = (out / "round_2" / "samples.jsonl").read_text()
    round_2 = _mtimes(out / "round_2")

    def rerun(expected_calls: int) -> dict[str, bool]:
        calls = reward.calls
        _run(model_dir, tokenizer, _config(tmp_path, rounds=2), reward)
        assert reward.calls - calls == expected_calls and not list(out.rglob("*.tmp"))
        assert _mtimes(out / "round_1") == round_1
        now = _mtimes(out / "round_2")
        return {name: now[name] != round_2[name] for name in now}

    # killed while evaluating: only the evaluation runs
    (out / "round_2" / "metrics.json").unlink()
    assert rerun(1) == {**dict.fromkeys(round_2, False), "metrics.json": True}
    round_2 = _mtimes(out / "round_2")
    # killed while training (a partial model folder left): training and evaluation run, not sampling or scoring
    (out / "round_2" / "model").rename(out / "round_2" / "model.tmp")
    assert rerun(1) == {"samples.jsonl": False, "scored.jsonl": False, "scoring.json": False,
                        "model/model.safetensors": True, "metrics.json": True}  # fmt: skip
    round_2 = _mtimes(out / "round_2")
    # killed while scoring (a partial file left): scoring and what follows
    (out / "round_2" / "scored.jsonl").rename(out / "round_2" / "scored.jsonl.tmp")
    assert rerun(2) == {**dict.fromkeys(round_2, True), "samples.jsonl": False}
    round_2 = _mtimes(out / "round_2")
    # killed while sampling: the same samples again (seed + round)
    (out / "round_2" / "samples.jsonl").rename(out / "round_2" / "samples.jsonl.tmp")
    assert rerun(2) == dict.fromkeys(round_2, True)
    assert (out / "round_2" / "samples.jsonl").read_text() == samples
    # round 1's model trained again: round 2, which came from it, is redone
    round_2 = _mtimes(out / "round_2")
    shutil.rmtree(out / "round_1" / "model")
    calls = reward.calls
    _run(model_dir, tokenizer, _config(tmp_path, rounds=2), reward)
    assert reward.calls - calls == 3  # round 1 held-out, round 2 samples and held-out
    now = _mtimes(out / "round_1")
    assert [name for name in now if now[name] != round_1[name]] == ["model/model.safetensors", "metrics.json"]
    now = _mtimes(out / "round_2")
    assert all(now[name] != round_2[name] for name in now)


@pytest.mark.slow
def test_a_changed_setup_stops_unless_overwritten(tmp_path, model_dir):
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    reward = LetterReward()
    _run(model_dir, tokenizer, _config(tmp_path, rounds=1), reward, eval_prompts=False)
    with pytest.raises(ValueError, match=r"holds a reward loop run with another setup \(changed: config.positives, "
                       r"reward_weights\)") as error:  # fmt: skip
        _run(model_dir, tokenizer, _config(tmp_path, rounds=1, positives="none"), reward, False, reward_weights=[2.0])
    assert "\n" not in str(error.value)
    samples = tmp_path / "loop" / "round_1" / "samples.jsonl"
    before = samples.stat().st_mtime_ns
    _run(model_dir, tokenizer, _config(tmp_path, rounds=1, positives="none"), reward, False, overwrite=True)
    assert samples.stat().st_mtime_ns != before
    assert json.loads((tmp_path / "loop" / "loop.json").read_text())["config"]["positives"] == "none"
    scored = load_data(str(tmp_path / "loop" / "round_1" / "scored.jsonl"))["train"]
    assert max(scored["score"]) < 1.0  # positives="none"
    # A run of an older release (no targets in its record: score_scale="auto" on per-token means) is not resumed
    record = tmp_path / "loop" / "loop.json"
    older = json.loads(record.read_text())
    del older["targets"]
    record.write_text(json.dumps(older))
    with pytest.raises(ValueError, match=r"another setup \(changed: targets\)"):
        _run(model_dir, tokenizer, _config(tmp_path, rounds=2, positives="none"), reward, False)


def test_a_round_without_preferences_stops(tmp_path, model_dir):
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    def constant(prompts, completions, **kwargs):
        return [1.0] * len(prompts)

    with pytest.raises(ValueError, match=r"^Round 1: no training rows: of 32 samples 0 got no reward and \d+ are emp"):
        _run(model_dir, tokenizer, _config(tmp_path, rounds=1), constant, eval_prompts=False)


def test_inputs_are_checked_before_anything_runs(tmp_path, model_dir, tokenizer):
    config, reward = _config(tmp_path, rounds=1), LetterReward()
    with pytest.raises(ValueError, match=r"^The prompts need a `prompt` column and rows \(columns: \['text'\]\)"):
        run_reward_loop(model_dir, Dataset.from_dict({"text": ["x"]}), reward, config=config, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="^Held-out prompts given twice"):
        _run(model_dir, tokenizer, _config(tmp_path, rounds=1, eval_prompts=2), reward)
    with pytest.raises(ValueError, match="^1 reward weights for 2 reward functions"):
        _run(model_dir, tokenizer, config, [reward, "trl_ulma.rewards.vader_sentiment"], reward_weights=[1.0])
    (tmp_path / "loop" / "round_1").mkdir(parents=True)
    with pytest.raises(ValueError, match="has round folders but no loop.json"):
        _run(model_dir, tokenizer, config, reward)
    assert reward.calls == 0


class RecordingULMATrainer(ULMATrainer):
    """Records where each round's reference model was loaded from."""

    references: list[str] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.references.append(get_config_model_id(self.ref_model.config))


@pytest.mark.slow
@pytest.mark.parametrize("reference", ["initial", "previous"])
def test_reference_model_of_each_round(tmp_path, model_dir, monkeypatch, reference):
    monkeypatch.setattr(RecordingULMATrainer, "references", [])
    monkeypatch.setitem(reward_loop.TRAINERS, "ulma", (RecordingULMATrainer, ULMAConfig))
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    _run(model_dir, tokenizer, _config(tmp_path, rounds=2, reference=reference), LetterReward(), eval_prompts=False)
    second = model_dir if reference == "initial" else str(tmp_path / "loop" / "round_1" / "model")
    assert RecordingULMATrainer.references == [model_dir, second]


def share_of_e(prompts, completions, **kwargs):
    """The share of a completion's characters that are "e": highest for "eeee..."; graded, so that every prompt's
    samples differ (samples come from the random model's full distribution: a 0/1 reward is mostly constant)."""
    return [c.count("e") / max(1, len(c)) for c in completions]


@pytest.mark.slow
@pytest.mark.parametrize(("trainer", "steps", "held_out"), [("ulma", 8, True), ("pointwise_dpo", 16, False)])
def test_two_rounds_raise_a_toy_reward(tmp_path, model_dir, trainer, steps, held_out):
    """The reward of fresh samples rises over two rounds: ULMA's on held-out prompts, point-wise DPO's on the loop's
    own prompts. Measured over sampling seeds 0-5 at these settings, it rose on every seed (ULMA by 0.02-0.06,
    point-wise DPO by 0.005-0.027); point-wise DPO's change on held-out prompts was within the noise, as often
    negative as positive (its targets, in reward units, move this random tiny model little: KL 0.3-1 nats)."""
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    config = RewardLoopConfig(output_dir=str(tmp_path / "loop"), max_new_tokens=6, rounds=2, trainer=trainer,
                              training=TRAINING | {"max_steps": steps, "learning_rate": 3e-2})
    prompts = Dataset.from_dict({"prompt": PROMPT_TEXTS})
    evaluation = Dataset.from_dict({"prompt": EVAL_TEXTS}) if held_out else prompts
    result = run_reward_loop(model_dir, prompts, share_of_e, config=config, tokenizer=tokenizer,
                             eval_prompts=evaluation)
    rounds = result["rounds"]
    assert [m["round"] for m in rounds] == [0, 1, 2] and rounds[0]["eval/kl"] == 0.0
    assert rounds[2]["eval/reward"] > rounds[0]["eval/reward"]
    assert rounds[1]["eval/kl"] > 0 and rounds[2]["eval/kl"] > 0
    assert 1 <= rounds[2]["eval/length"] <= 6 and 0 <= rounds[2]["eval/repetition"] <= 1
    out = Path(config.output_dir)
    assert json.loads((out / "results.json").read_text())["rounds"] == rounds
    assert json.loads((out / "loop.json").read_text())["config"]["trainer"] == trainer
    samples = [json.loads(line) for line in (out / "round_1" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == len(PROMPT_TEXTS) * 4 and {"completion_ids", "eos"} <= set(samples[0])
    # the scored rows are point-wise rows the CLI reads; their counts are the round's
    scored = convert_to_pointwise(load_data(str(out / "round_1" / "scored.jsonl"))["train"], "auto")
    assert set(scored.column_names) >= {"prompt", "completion", "score", "reward", "eos"}
    counts = json.loads((out / "round_1" / "scoring.json").read_text())
    assert len(scored) == rounds[1]["samples/rows"] == counts["rows"] and counts["samples"] == len(samples)
    positives = sum(s >= 1.0 for s in scored["score"])
    assert positives == rounds[1]["samples/positives"] and (positives > 0) == (trainer == "ulma")  # the default
    assert rounds[1]["samples/reward"] == pytest.approx(
        sum(share_of_e(None, [s["completion"]])[0] for s in samples) / len(samples)
    )


@pytest.mark.slow
def test_a_round_fits_the_reward_in_its_own_units(tmp_path, model_dir):
    """Point-wise DPO's first loss of a round, where the policy is the reference (h = 0), is the mean of
    (reward - baseline)^2 in the reward's units, whatever beta: each row's baseline is its prompt's mean reward with the
    round's mean counted as one more sample. (Fitted on the scores' standard deviation instead, at beta 0.1, the loss
    would be (0.1 / std)^2 times the same in score units.)"""
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    training = TRAINING | {"max_steps": 1, "per_device_train_batch_size": 64, "logging_steps": 1, "beta": 0.1}
    config = RewardLoopConfig(output_dir=str(tmp_path / "loop"), max_new_tokens=6, rounds=1, trainer="pointwise_dpo",
                              positives="none", training=training)
    _run(model_dir, tokenizer, config, share_of_e, eval_prompts=False)
    folder = tmp_path / "loop" / "round_1"
    rows = [json.loads(line) for line in (folder / "scored.jsonl").read_text().splitlines()]
    assert len(rows) <= 64 and not any(row["score"] >= 1.0 for row in rows)  # one batch; no positives
    overall = sum(row["reward"] for row in rows) / len(rows)
    by_prompt: dict[str, list[float]] = {}
    for row in rows:
        by_prompt.setdefault(row["prompt"], []).append(row["reward"])
    baseline = {p: (sum(r) + overall) / (len(r) + 1) for p, r in by_prompt.items()}
    expected = sum((row["reward"] - baseline[row["prompt"]]) ** 2 for row in rows) / len(rows)
    state = json.loads((folder / "model" / "trainer_state.json").read_text())
    assert state["log_history"][0]["loss"] == pytest.approx(expected, rel=1e-4)
    args = torch.load(folder / "model" / "training_args.bin", weights_only=False)
    rewards = [row["reward"] for row in rows]
    assert (args.score_scale, args.length_normalize) == (max(rewards) - min(rewards), False)  # sums: h is log pi/pi_ref
    assert json.loads((tmp_path / "loop" / "loop.json").read_text())["targets"] == {
        "score_scale": "the round's reward range", "length_normalize": False}
    scoring = json.loads((folder / "scoring.json").read_text())
    assert (scoring["reward_min"], scoring["reward_max"]) == (min(r["reward"] for r in rows), max(r["reward"] for r in rows))


@pytest.mark.slow
def test_the_command_line_runs_resumes_and_prints_each_round(tmp_path, model_dir, monkeypatch, capsys):
    """`trl-ulma reward-loop` as the README gives it: a dotted-path reward from the working directory, a prompts
    file with its own column name, TRL flags for the trainer; a second run resumes (nothing retrained)."""
    from trl_ulma.cli import main

    (tmp_path / "toy_rewards.py").write_text(
        "def has_e(prompts, completions, **kwargs):\n    return [1.0 if 'e' in c else 0.0 for c in completions]\n"
    )
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"question": text}) + "\n" for text in PROMPT_TEXTS + EVAL_TEXTS))
    out = tmp_path / "loop"
    argv = ["reward-loop", "--model_name_or_path", model_dir, "--dataset_name", str(data), "--prompt_column",
            "question", "--reward_funcs", "toy_rewards.has_e", "--num_generations", "2", "--rounds", "1",
            "--max_new_tokens", "6", "--eval_fraction", "0.3", "--max_steps", "2", "--learning_rate", "3e-2",
            "--output_dir", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    table = [line.split() for line in printed.splitlines() if line[:1].isdigit()]
    assert [row[0] for row in table] == ["0", "1"] and table[0][1] == "-"  # round 0 has no training samples
    rounds = json.loads((out / "results.json").read_text())["rounds"]
    assert float(table[1][2]) == pytest.approx(rounds[1]["eval/reward"], abs=1e-4)
    # 3e-2 moves the policy well past the estimate's noise on 4 held-out samples (KL 0.17-0.34 over seeds 0-3; at
    # 1e-2, 0.05-0.08 and once -0.01: a mean of log-ratios can fall below 0)
    assert float(table[1][3]) == pytest.approx(rounds[1]["eval/kl"], abs=1e-4) and rounds[1]["eval/kl"] > 0
    loop = json.loads((out / "loop.json").read_text())
    assert loop["config"]["training"]["max_steps"] == 2 and loop["reward_funcs"] == ["toy_rewards.has_e"]
    model = out / "round_1" / "model" / "model.safetensors"
    before = model.stat().st_mtime_ns
    assert main(argv) == 0 and model.stat().st_mtime_ns == before  # resumed: every stage's output was there
    assert main([*argv[:-2], "--output_dir", str(out), "--beta", "0.3"]) == 1  # another setup, same folder
    assert "another setup (changed: config.training)" in capsys.readouterr().err
    assert main([*argv, "--use_peft"]) == 1  # a flag the loop would ignore
    assert "does not use --use_peft" in capsys.readouterr().err
    assert main([*argv[:-2], "--output_dir", str(tmp_path / "seeded"), "--seed", "7"]) == 0
    seeded = json.loads((tmp_path / "seeded" / "loop.json").read_text())["config"]
    assert seeded["seed"] == 7 and "seed" not in seeded["training"]  # the loop's seed: split, samples, trainer


def test_the_loop_samples_from_the_policy_itself(model_dir, tokenizer, monkeypatch):
    """transformers keeps the top 50 tokens unless told otherwise: the loop asks for top_k=0, so that its samples,
    and the KL estimated on them, come from the policy."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    model.generation_config.repetition_penalty = 1.3  # as some models ship: it must not reshape the loop's samples
    model.generation_config.no_repeat_ngram_size = 2
    seen = []
    generate_once = model.generate
    monkeypatch.setattr(model, "generate", lambda **kwargs: seen.append(kwargs) or generate_once(**kwargs))
    loop = reward_loop._Loop(model_dir, None, [], [], RewardLoopConfig(output_dir="x"), tokenizer, None)
    sample_completions(model, tokenizer, ["User: hi\nAssistant:"], loop.settings(seed=0))
    config, _ = model._prepare_generation_config(seen[-1]["generation_config"])  # as `generate` completes it
    assert (config.top_k, config.top_p, config.temperature, config.repetition_penalty) == (0, 1.0, 1.0, 1.0)
    processors = model._get_logits_processor(config, input_ids_seq_length=3, encoder_input_ids=None,
                                             prefix_allowed_tokens_fn=None, logits_processor=[])
    assert [type(p).__name__ for p in processors] == ["MinPLogitsWarper"] and processors[0].min_p == 0.0  # a no-op
    sample_completions(model, tokenizer, ["User: hi\nAssistant:"], GenerationSettings(do_sample=True))
    assert "generation_config" not in seen[-1] and "top_k" not in seen[-1]  # unset: the model's own config


# --------------------------------------------------------------------------------------------------------------------
# vLLM (a stand-in package: the real one needs a GPU)
# --------------------------------------------------------------------------------------------------------------------
class FakeVLLM(types.ModuleType):
    """A stand-in for the vllm package: records each engine's and request's settings and answers each prompt with
    the next of ``answers`` (token ids, finish reason, stop reason), cycling."""

    def __init__(self, answers):
        super().__init__("vllm")
        self.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
        self.answers, self.engines, self.requests = answers, [], []
        package = self

        class LLM:
            def __init__(self, **kwargs):
                package.engines.append(kwargs)

            def generate(self, prompts, sampling_params, use_tqdm):
                package.requests.append((prompts, sampling_params))
                cycle = itertools.cycle(package.answers)
                return [
                    types.SimpleNamespace(outputs=[types.SimpleNamespace(
                        token_ids=ids, finish_reason=finish, stop_reason=stop)])
                    for (ids, finish, stop), _ in zip(cycle, prompts)
                ]

        self.LLM, self.SamplingParams = LLM, lambda **kwargs: kwargs


def test_vllm_samples_keep_the_prompt_ids_stop_tokens_and_settings(model_dir, tokenizer, monkeypatch, tmp_path):
    eos = tokenizer.eos_token_id
    answers = [
        ([20, 21, eos], "stop", None),  # ended by EOS, which vLLM keeps in token_ids
        ([22, 23], "stop", None),  # ended by EOS, left out of token_ids
        ([24, 25, 26], "length", None),  # cut at max_tokens
    ]
    vllm = FakeVLLM(answers)
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    prompts = ["User: hi\nAssistant:", "User: Can you help me with a poem?\nAssistant:", "User: bye\nAssistant:"]
    settings = GenerationSettings(max_new_tokens=3, do_sample=True, top_k=0, temperature=0.7, top_p=0.9, seed=5)
    samples = sample_completions_vllm(model_dir, tokenizer, prompts, settings, gpu_memory_utilization=0.2)
    assert vllm.engines == [{"model": model_dir, "seed": 5, "gpu_memory_utilization": 0.2, "max_model_len": 512 + 3}]
    (requests, params), = vllm.requests
    assert requests == [{"prompt_token_ids": tokenizer(p)["input_ids"]} for p in prompts]
    assert params == {"max_tokens": 3, "stop_token_ids": [eos], "temperature": 0.7, "top_p": 0.9, "top_k": -1}
    assert [s.completion_ids for s in samples] == [[20, 21, eos], [22, 23, eos], [24, 25, 26]]
    assert [s.eos for s in samples] == [True, True, False]
    assert [s.prompt_ids for s in samples] == [r["prompt_token_ids"] for r in requests]
    assert samples[2].text == tokenizer.decode([24, 25, 26], skip_special_tokens=True)
    greedy = sample_completions_vllm(model_dir, tokenizer, prompts[:1], GenerationSettings(max_new_tokens=3))
    assert vllm.requests[-1][1] == {"max_tokens": 3, "stop_token_ids": [eos], "temperature": 0.0}
    assert greedy[0].completion_ids == [20, 21, eos]
    # Without a generation_config.json the model's config names the stop tokens, as transformers reads them
    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare)
    (bare / "generation_config.json").unlink()
    config = json.loads((bare / "config.json").read_text())
    (bare / "config.json").write_text(json.dumps(config | {"eos_token_id": [eos, 7]}))
    sample_completions_vllm(str(bare), tokenizer, prompts[:1], GenerationSettings(max_new_tokens=3))
    assert vllm.requests[-1][1]["stop_token_ids"] == sorted({eos, 7})


def test_use_vllm_needs_vllm_and_a_gpu(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"^`use_vllm=True` needs the vllm package and a GPU \(vllm installed: False, "
                                         r"GPU: False\): install vllm"):
        RewardLoopConfig(output_dir=str(tmp_path), use_vllm=True)
    assert RewardLoopConfig(output_dir=str(tmp_path)).use_vllm is False  # unset: transformers on this machine
    monkeypatch.setattr(reward_loop, "vllm_available", lambda: True)
    assert RewardLoopConfig(output_dir=str(tmp_path)).use_vllm is True  # unset: vLLM where it runs
    assert RewardLoopConfig(output_dir=str(tmp_path), use_vllm=False).use_vllm is False
    with pytest.raises(ValueError, match=r"^`vllm_gpu_memory_utilization` must be in \(0, 1\], got 0"):
        RewardLoopConfig(output_dir=str(tmp_path), vllm_gpu_memory_utilization=0)
    parser = TrlParser((RewardLoopArguments,))
    (args,) = parser.parse_args_into_dataclasses(["--use_vllm", "--vllm_gpu_memory_utilization", "0.5"])
    config = args.to_config(str(tmp_path), explicit={"use_vllm", "vllm_gpu_memory_utilization"})
    assert (config.use_vllm, config.vllm_gpu_memory_utilization) == (True, 0.5)
    (args,) = parser.parse_args_into_dataclasses(["--use_vllm", "false"])
    assert args.to_config(str(tmp_path), explicit={"use_vllm"}).use_vllm is False  # off where vLLM would run
    (args,) = parser.parse_args_into_dataclasses([])
    assert args.to_config(str(tmp_path), explicit=set()).use_vllm is True  # unset: where it runs


@pytest.mark.slow
def test_the_loop_samples_each_round_with_vllm_from_the_saved_policy(tmp_path, model_dir, monkeypatch):
    """Each round's samples come from vLLM, loaded from the previous round's saved model (the held-out samples from
    the round's own); a run resumes with vLLM switched off."""
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    e, x = tokenizer.convert_tokens_to_ids(["e", "x"])
    vllm = FakeVLLM([([e, e, tokenizer.eos_token_id], "stop", None), ([x, x, x], "length", None), ([e, x], "stop", None)])
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setattr(reward_loop, "vllm_available", lambda: True)
    result = _run(model_dir, tokenizer, _config(tmp_path, rounds=2), share_of_e)
    loop = tmp_path / "loop"
    round_1, round_2 = str(loop / "round_1" / "model"), str(loop / "round_2" / "model")
    # round 0 held-out; round 1 samples, held-out; round 2 samples, held-out
    assert [engine["model"] for engine in vllm.engines] == [model_dir, model_dir, round_1, round_1, round_2]
    assert [len(prompts) for prompts, _ in vllm.requests] == [24, 32, 24, 32, 24]  # K = 4 per prompt
    eos = tokenizer.eos_token_id
    samples = [json.loads(line) for line in (loop / "round_1" / "samples.jsonl").read_text().splitlines()]
    assert [(s["completion_ids"], s["eos"]) for s in samples[:3]] == [([e, e, eos], True), ([x] * 3, False),
                                                                      ([e, x, eos], True)]
    for metrics in result["rounds"]:  # the held-out figures come from the (same) vLLM samples: "ee", "xxx", "ex"
        assert metrics["eval/reward"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert result["rounds"][0]["eval/kl"] == 0 and result["rounds"][2]["eval/kl"] != 0
    # How samples are drawn may change on resume (vLLM or not, the batch size): the same run, nothing redone
    changed = dataclasses.replace(_config(tmp_path, rounds=2, use_vllm=False), generation_batch_size=8)
    resumed = _run(model_dir, tokenizer, changed, share_of_e)
    assert resumed["rounds"] == result["rounds"] and len(vllm.engines) == 5
