"""`benchmarks/reward_frontier.py --smoke`: every method of the reward-KL frontier runs end to end on the tiny model,
the report is written, and a rerun takes every job from the cache."""

import json
import math
import shutil
import sys
from pathlib import Path

import pytest


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the benchmark scripts
import reward_frontier  # noqa: E402


@pytest.mark.slow
def test_the_smoke_grid_runs_every_method_and_resumes(tmp_path):
    argv = ["--smoke", "--threads", "1", "--output_dir", str(tmp_path), "--results_dir", str(tmp_path)]
    payload = reward_frontier.main(argv)
    assert payload["failed"] == []
    methods = {result["method"] for result in payload["results"]}
    assert methods == set(reward_frontier.METHODS)
    assert payload["base"]["metrics"]["kl"] == 0.0
    for result in payload["results"]:
        metrics = result["metrics"]
        assert all(math.isfinite(metrics[key]) for key in ("reward", "kl", "perplexity", "length"))
        assert result["completions_generated"] > 0
    written = json.loads((tmp_path / "reward-frontier-smoke-seed0.json").read_text())
    assert len(written["results"]) == len(payload["results"])
    assert (tmp_path / "reward-frontier-smoke-seed0.png").read_bytes()[:4] == b"\x89PNG"
    again = reward_frontier.main(argv)
    assert again["estimate"]["jobs_cached"] == len(payload["results"])  # nothing retrained


@pytest.mark.slow
def test_a_run_of_other_methods_adds_them_to_the_results_file_of_a_lost_run_folder(tmp_path):
    common = ["--smoke", "--threads", "1", "--output_dir", str(tmp_path), "--results_dir", str(tmp_path / "results")]
    first = reward_frontier.main([*common, "--methods", "rft"])
    shutil.rmtree(tmp_path / "seed0")  # the run folder is lost (another session); the results file stays
    second = reward_frontier.main([*common, "--methods", "unlikelihood", "--lrs", "1e-3", "3e-3"])
    assert second["estimate"]["jobs_run"] == 2  # rft is not retrained
    assert [(r["method"], r["label"]) for r in second["results"]] == [
        ("rft", "lr=0.001"),
        ("unlikelihood", "lr=0.001"),
        ("unlikelihood", "lr=0.003"),
    ]
    assert second["results"][0] == first["results"][0]
    assert (tmp_path / "seed0" / "rft-0.001" / "result.json").exists()  # written back to the run folder
    assert second["commands"] == [first["command"], second["command"]]
    other = reward_frontier.main([*common, "--methods", "dpo", "--epochs", "1", "--output_dir", str(tmp_path / "b")])
    assert [r["method"] for r in other["results"]] == ["dpo", "dpo"]  # other settings: the file is not merged
