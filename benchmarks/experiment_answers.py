"""What the judge saw: answer lengths and head-to-head win rates, from one or more `trl-ulma experiment` run folders.

    python benchmarks/experiment_answers.py runs/hh-harmless-cpu runs/hh-harmless-cpu-seed1 --against ulma

For each method (mean over the run folders, e.g. seeds): the mean answer length in tokens, the share of answers cut
at `max_new_tokens` (they never ended), the judge's correlation between length and score within the method, and the
head-to-head win rate of ``--against`` over the method under the judge, prompt by prompt (ties count half). Prints a
markdown table and writes it beside the first run's results (``answers.md``).
"""

import argparse
import json
import statistics
from pathlib import Path

import yaml
from transformers import AutoTokenizer

from trl_ulma.default_models import default_model_path
from trl_ulma.evaluation import win_rate


def samples(run: Path, method: str) -> list[dict]:
    return [json.loads(line) for line in (run / method / "samples.jsonl").read_text().splitlines()]


def correlation(xs: list[float], ys: list[float]) -> float:
    """Pearson's correlation; NaN when either side is constant."""
    try:
        return statistics.correlation(xs, ys)
    except statistics.StatisticsError:
        return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of the same config (e.g. two seeds)")
    parser.add_argument("--against", default="ulma", help="the method whose head-to-head win rates are reported")
    parser.add_argument("--config", type=Path, default=Path("experiments/hh-harmless-cpu.yaml"))
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    cap = config["evaluation"]["max_new_tokens"]
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path(config["model"]["name"])))
    methods = list(json.loads((args.runs[0] / "results.json").read_text())["results"])
    against = {run: [row["judge_score"] for row in samples(run, args.against)] for run in args.runs}

    lines = [
        f"| method | answer tokens | cut at {cap} tokens | corr(length, judge score) | {args.against} wins |",
        "|---|---:|---:|---:|---:|",
    ]
    for method in methods:
        lengths, capped, corr, wins = [], [], [], []
        for run in args.runs:
            rows = samples(run, method)
            tokens = [len(tokenizer(row["answer"], add_special_tokens=False)["input_ids"]) for row in rows]
            lengths.append(statistics.fmean(tokens))
            capped.append(sum(t >= cap for t in tokens) / len(tokens))
            corr.append(correlation([float(t) for t in tokens], [row["judge_score"] for row in rows]))
            wins.append(win_rate(against[run], [row["judge_score"] for row in rows]))
        lines.append(
            f"| {method} | {statistics.fmean(lengths):.1f} | {statistics.fmean(capped):.2f} | "
            f"{statistics.fmean(corr):+.2f} | {statistics.fmean(wins):.3f} |"
        )
    table = "\n".join(lines)
    print(table)
    (args.runs[0] / "answers.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
