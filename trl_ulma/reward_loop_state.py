"""A reward-loop run's folder: its files written atomically, which stages of which rounds are done, what a stage run
again removes, and whether a run already in the folder may be resumed with a new setup."""

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset


logger = logging.getLogger("trl_ulma.reward_loop")  # its messages are the loop's

# A stage's outputs, in order: it is done when they all exist
STAGES = {
    "sample": ("samples.jsonl",),
    "score": ("scored.jsonl", "scoring.json"),
    "train": ("model",),
    "evaluate": ("metrics.json",),
}


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_json(path: Path, value: Any) -> None:
    _write_atomic(path, json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    _write_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _round_dirs(output_dir: Path) -> list[Path]:
    return [p for p in output_dir.glob("round_*") if p.is_dir() and p.name.removeprefix("round_").isdigit()]


def stage_done(round_dir: Path, stage: str) -> bool:
    return all((round_dir / name).exists() for name in STAGES[stage])


def redo_from(output_dir: Path, round_index: int, stage: str) -> None:
    """Before ``stage`` (sample, score or train) of a round runs (again): remove what its old output fed, the round's
    later stages and the later rounds."""
    later = list(STAGES)[list(STAGES).index(stage) + 1 :]
    for name in [name for s in later for name in STAGES[s]]:
        remove(output_dir / f"round_{round_index}" / name)
    for folder in _round_dirs(output_dir):
        if int(folder.name.removeprefix("round_")) > round_index:
            logger.info(f"{folder.name}: removed, it was derived from round {round_index}'s old {stage} stage")
            shutil.rmtree(folder)


def digest(prompts: Dataset | None) -> str | None:
    if prompts is None:
        return None
    return hashlib.sha256(json.dumps(prompts.to_list(), sort_keys=True, default=str).encode()).hexdigest()[:16]


# What may change when a run resumes: the rounds to run, the folder's name, and how the samples are drawn
RESUMABLE = ("rounds", "output_dir", "use_vllm", "vllm_gpu_memory_utilization", "generation_batch_size")


def check_run(output_dir: Path, record: dict[str, Any], overwrite: bool) -> None:
    """Write ``loop.json``, after checking that a run already in ``output_dir`` has the same record (``rounds`` and
    the folder's name aside); ``overwrite`` removes the run's outputs (round folders, results) instead."""
    path = output_dir / "loop.json"
    if not path.exists() and _round_dirs(output_dir) and not overwrite:
        raise ValueError(
            f"{output_dir} has round folders but no loop.json, so their setup is unknown: use another output_dir, or "
            "overwrite=True to start over."
        )
    if overwrite:
        for folder in _round_dirs(output_dir):
            shutil.rmtree(folder)
        remove(output_dir / "results.json")
    elif path.exists():
        old, new = json.loads(path.read_text()), json.loads(json.dumps(record, default=str))
        changed = [
            f"config.{key}"
            for key, value in new["config"].items()
            if key not in RESUMABLE and old["config"].get(key) != value
        ]
        changed += [key for key, value in new.items() if key != "config" and old.get(key) != value]
        if changed:
            raise ValueError(
                f"{output_dir} holds a reward loop run with another setup (changed: {', '.join(changed)}): use another "
                "output_dir, the same setup to resume it, or overwrite=True to start over."
            )
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
