"""The demo dataset that ships with trl-ulma, for offline examples and the CLI's default run.

Everyday requests (how-to, explanations, writing, advice) and unsafe ones, each answered once helpfully and
harmlessly (label True) and once in a harmful, rude or unhelpful way (label False). Written by
`scripts/make_demo_dataset.py` from hand-written pieces into `trl_ulma/resources/demo_pointwise.jsonl`.
"""

import json
from importlib.resources import files

from datasets import Dataset


DEMO_SPLITS = ("train", "test")


def load_demo_dataset(split: str = "train") -> Dataset:
    """One split of the demo dataset as conversational point-wise rows.

    Columns: ``prompt`` (one user message), ``completion`` (one assistant message), ``label`` (bool) and
    ``category`` (``how-to``, ``explain``, ``writing``, ``advice`` or ``unsafe``; ignored by the trainers). Every
    prompt has one positive and one negative row. ``"train"``: 444 rows (222 prompts); ``"test"``: 96 rows (48
    prompts), a fixed held-out set of topics, so no prompt, nor a rephrasing of one, is in both splits.
    """
    if split not in DEMO_SPLITS:
        raise ValueError(f"Unknown split {split!r}: the demo dataset has the splits {', '.join(DEMO_SPLITS)}.")
    text = (files("trl_ulma") / "resources" / "demo_pointwise.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines()]
    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": row["prompt"]}],
                "completion": [{"role": "assistant", "content": row["completion"]}],
                "label": row["label"],
                "category": row["category"],
            }
            for row in rows
            if row["split"] == split
        ]
    )


_TITLE_WORDS = (
    ("Silent", "Crimson", "Last", "Hidden", "Broken", "Golden", "Midnight", "Endless", "Frozen", "Wandering"),
    ("Harbor", "Orchard", "Signal", "Kingdom", "River", "Machine", "Garden", "Frontier", "Letter", "Lighthouse"),
)
_REVIEW_REQUESTS = (
    "Write a two-sentence review of the movie {title}.",
    "In two sentences, tell me what you thought of the film {title}.",
)


def review_prompts(n: int = 100) -> Dataset:
    """``n`` requests for a short movie review (at most 200), one user message each, with invented titles: the
    prompts of the reward loop's default job and of `benchmarks/reward_frontier.py`, where a sentiment reward
    (`trl_ulma.rewards.vader_sentiment`) varies across the base model's answers. Column: ``prompt``."""
    titles = [f"The {a} {b}" for b in _TITLE_WORDS[1] for a in _TITLE_WORDS[0]]
    requests = [request.format(title=title) for request in _REVIEW_REQUESTS for title in titles]
    if not 1 <= n <= len(requests):
        raise ValueError(f"`n` must be in [1, {len(requests)}], got {n}.")
    return Dataset.from_list([{"prompt": [{"role": "user", "content": text}]} for text in requests[:n]])
