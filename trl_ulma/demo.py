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
