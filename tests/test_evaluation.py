"""Evaluation: exact perplexity of known distributions, the judge's tokens, win rate with ties, the report files."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM
from trl import RewardConfig, RewardTrainer

from trl_ulma import evaluation
from trl_ulma.baselines import pair_indices
from trl_ulma.evaluation import (
    GenerationSettings,
    RewardJudge,
    batch_completion_logps,
    format_table,
    generate,
    pair_accuracy,
    perplexity,
    perplexity_of,
    toxicity_rate,
    win_rate,
    write_report,
)


class FixedDistribution(torch.nn.Module):
    """A "language model" whose next-token distribution is ``probs`` at every position, whatever the input."""

    def __init__(self, probs: list[float]):
        super().__init__()
        self.log_probs = torch.nn.Parameter(torch.tensor(probs).log(), requires_grad=False)

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.log_probs.expand(*input_ids.shape, -1))


def test_completion_logps_of_a_known_distribution():
    model = FixedDistribution([0.1, 0.2, 0.3, 0.4])
    input_ids = torch.tensor([[0, 3, 1, 2], [2, 3, 0, 0]])
    attention_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    completion_mask = torch.tensor([[0, 1, 1, 0], [0, 1, 0, 0]])  # scored: 3 and 1 in row 0, 3 in row 1
    sums, counts = batch_completion_logps(model, input_ids, attention_mask, completion_mask)
    assert counts.tolist() == [2, 1] and int(counts.sum()) == 3
    assert sums.tolist() == pytest.approx([math.log(0.4) + math.log(0.2), math.log(0.4)], rel=1e-6)
    assert -sums.sum().item() == pytest.approx(-(math.log(0.4) + math.log(0.2) + math.log(0.4)), rel=1e-6)


def test_perplexity_counts_completion_tokens_only(tokenizer):
    vocab = len(tokenizer)
    probs = torch.arange(1, vocab + 1, dtype=torch.float64)
    probs = (probs / probs.sum()).tolist()  # p(token t) grows with t: the value depends on which tokens are scored
    rows = [
        {"prompt": "User: Can you help me with a poem?\nAssistant:", "completion": " Sure, here is a poem."},
        {"prompt": "User: hi\nAssistant:", "completion": " No."},
    ]
    logps, per_row = [], []
    for row in rows:  # TRL's split: the completion is what prompt + completion + EOS adds to the prompt's tokens
        prompt_ids = tokenizer(row["prompt"])["input_ids"]
        full_ids = tokenizer(row["prompt"] + row["completion"] + tokenizer.eos_token)["input_ids"]
        assert full_ids[: len(prompt_ids)] == prompt_ids
        row_logps = [math.log(probs[t]) for t in full_ids[len(prompt_ids) :]]
        logps += row_logps
        per_row.append((sum(row_logps), len(row_logps)))
    expected = math.exp(-sum(logps) / len(logps))
    model = FixedDistribution(probs)
    scored = evaluation.completion_logps(model, tokenizer, rows, batch_size=2)
    assert [count for _, count in scored] == [count for _, count in per_row]
    assert [logp for logp, _ in scored] == pytest.approx([logp for logp, _ in per_row], rel=1e-5)
    assert perplexity(model, tokenizer, rows, batch_size=1) == pytest.approx(expected, rel=1e-5)
    assert perplexity(model, tokenizer, rows, batch_size=2) == pytest.approx(expected, rel=1e-5)  # padding ignored
    uniform = FixedDistribution([1 / vocab] * vocab)
    assert perplexity(uniform, tokenizer, rows) == pytest.approx(vocab, rel=1e-5)


def test_win_rate_counts_ties_half():
    assert win_rate([3.0, 1.0, 2.0, 2.0], [1.0, 3.0, 2.0, 5.0]) == 0.375
    assert win_rate([1.0], [1.0]) == 0.5
    with pytest.raises(ValueError, match="as many scores"):
        win_rate([1.0, 2.0], [1.0])


def test_pairs_within_a_prompt_better_against_worse():
    rows = [
        {"prompt": "a", "score": 1.0},
        {"prompt": "b", "score": 0.0},
        {"prompt": "a", "score": 0.0},
        {"prompt": "a", "score": 0.5},
        {"prompt": "b", "score": 1.0},
        {"prompt": "c", "score": 1.0},  # alone: no pair
        {"prompt": [{"role": "user", "content": "a"}], "score": 0.0},  # messages are another prompt than the text "a"
    ]
    assert sorted(pair_indices(rows)) == [(0, 2), (0, 3), (3, 2), (4, 1)]


def test_pair_accuracy_counts_ties_half():
    pairs = [(0, 2), (0, 3), (3, 2), (4, 1)]
    gains = [0.5, -1.0, 0.0, 0.0, -2.0]  # 0 > 2 yes; 0 > 3 yes; 3 = 2 tie; 4 > 1 no
    assert pair_accuracy(gains, pairs) == (1 + 1 + 0.5 + 0) / 4
    assert pair_accuracy([0.0] * 5, pairs) == 0.5  # the base model against itself
    with pytest.raises(ValueError, match="No pairs"):
        pair_accuracy(gains, [])


def test_perplexity_of_summed_log_probs():
    assert perplexity_of([(-2.0, 2), (-4.0, 1)]) == pytest.approx(math.exp(6 / 3))


def test_toxicity_rate():
    assert toxicity_rate(["a", "b", "c"], lambda texts: [0.2, 0.5, 0.9]) == pytest.approx(2 / 3)


def test_format_table():
    results = {
        "sft": {"perplexity": 12.3456, "judge_score": -0.5, "win_rate": 0.25},
        "ulma": {"perplexity": float("nan"), "judge_score": 1.0, "win_rate": 0.75},
    }
    assert format_table(results) == (
        "| method | perplexity ↓ | judge score ↑ | win rate vs reference ↑ |\n"
        "|---|---:|---:|---:|\n"
        "| sft | 12.346 | -0.500 | 0.250 |\n"
        "| ulma | n/a | 1.000 | 0.750 |"
    )
    assert format_table(results, ["win_rate", "toxicity_rate"]).splitlines()[2] == "| sft | 0.250 | n/a |"


def test_judge_sees_the_reward_trainers_tokens(model_dir, tokenizer, tmp_path):
    """The judge scores exactly the token sequences `trl.RewardTrainer` trains on, text and conversational."""
    text = {"prompt": "User: hi\nAssistant:", "chosen": " Hello there.", "rejected": " Go away."}
    chat = {
        "prompt": [{"role": "user", "content": "hi"}],
        "chosen": [{"role": "assistant", "content": "Hello."}],
        "rejected": [{"role": "assistant", "content": "Go away."}],
    }
    args = RewardConfig(str(tmp_path / "rm"), use_cpu=True, bf16=False, report_to="none", max_steps=1)
    for row in (text, chat):
        trainer = RewardTrainer(
            model_dir, args=args, train_dataset=Dataset.from_list([row]), processing_class=tokenizer
        )
        trainer.save_model(str(tmp_path / "rm"))
        judge = RewardJudge(str(tmp_path / "rm"), tokenizer)
        prepared = trainer.train_dataset[0]
        assert judge._ids(row["prompt"], row["chosen"]) == prepared["chosen_ids"]
        assert judge._ids(row["prompt"], row["rejected"]) == prepared["rejected_ids"]
        with torch.no_grad():
            expected = trainer.model(input_ids=torch.tensor([prepared["chosen_ids"]])).logits[0, 0].item()
        assert judge.score([row["prompt"]], [row["chosen"]]) == [pytest.approx(expected, rel=1e-5)]


def test_generation_is_reproducible(model_dir, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    prompts = ["User: hi\nAssistant:", [{"role": "user", "content": "hi"}], "User: Can you help me?\nAssistant:"]
    sampled = GenerationSettings(max_new_tokens=6, batch_size=2, do_sample=True, seed=3)
    first = generate(model, tokenizer, prompts, sampled)
    assert len(first) == 3 and all(isinstance(answer, str) for answer in first)
    assert generate(model, tokenizer, prompts, sampled) == first
    greedy = GenerationSettings(max_new_tokens=6, batch_size=1)
    one_by_one = generate(model, tokenizer, prompts, greedy)
    assert generate(model, tokenizer, prompts, GenerationSettings(max_new_tokens=6, batch_size=3)) == one_by_one


def test_write_report(tmp_path, monkeypatch):
    results = {"sft": {"perplexity": 2.0, "win_rate": 0.5}, "ulma": {"perplexity": 1.5, "win_rate": 0.75}}
    curves = {"sft": ("loss", [(1, 2.0), (2, 1.0)]), "ulma": ("loss", [(1, 3.0), (2, 1.5)])}
    pytest.importorskip("matplotlib")
    files = write_report(tmp_path, results, curves, ["a note"], {"judge": {"pair_accuracy": 0.625}})
    assert set(files) == {"table", "json", "plot"}
    assert Path(files["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Path(files["table"]).read_text() == format_table(results) + "\n\n- a note\n"
    saved = json.loads(Path(files["json"]).read_text())
    assert saved["results"] == results and saved["notes"] == ["a note"]
    assert saved["judge"] == {"pair_accuracy": 0.625}
    assert saved["curves"]["ulma"] == {"key": "loss", "points": [[1, 3.0], [2, 1.5]]}

    def no_matplotlib(*args):
        raise ImportError("matplotlib")

    monkeypatch.setattr(evaluation, "plot_report", no_matplotlib)
    (tmp_path / "results.png").unlink()
    files = write_report(tmp_path, results, curves)
    assert "plot" not in files and not (tmp_path / "results.png").exists()
    assert "matplotlib is not installed" in json.loads(Path(files["json"]).read_text())["notes"][0]


def test_installed_toxicity_classifier():
    pytest.importorskip("profanity_check")
    classify = evaluation.load_toxicity_classifier()
    low, high = classify(["Have a nice day, and thank you for asking.", "You are a stupid idiot."])
    assert low < 0.5 < high
