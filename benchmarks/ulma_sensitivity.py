"""ULMA's sensitivity to beta, length normalisation, reduction and the balance of its two terms, on the ground truth.

    python benchmarks/ulma_sensitivity.py [--seeds 0 1 2] [--output benchmarks/results/ulma-sensitivity.json]

Each variant is ULMA with some `ULMAConfig` fields changed, trained and scored exactly like the methods of
`alignment_groundtruth.py` (same world, data, seeds, optimisation and per-variant learning-rate tuning). The grid:

    balance    ``preference_balance`` (a negative's initial gradient weight as a share of a positive's) from the
               paper's plain sum (None: beta / 2 = 0.05 at beta = 0.1) to 1, at beta = 0.1
    beta       0.1 to 3, with the paper's plain sum (where beta also sets the balance) and with the default balance
    log-probs  summed instead of length-normalised; reduction ``mean`` instead of ``per_group``

The base model, SFT and KTO are anchors. The plot shows harm rate and perplexity of good answers against the
balance and against beta.
"""

import argparse
import sys
from pathlib import Path
from typing import Any


sys.path.insert(0, str(Path(__file__).resolve().parent))
import alignment_groundtruth as groundtruth  # noqa: E402


BETAS = (0.1, 0.3, 1.0, 3.0)
BALANCES = (0.05, 0.15, 0.25, 0.5, 1.0)  # 0.05 = beta / 2 at beta = 0.1: the paper's plain sum
DEFAULT_BALANCE = 0.25


def ulma(beta: float = 0.1, balance: float | None = DEFAULT_BALANCE, **fields) -> dict[str, Any]:
    return {"method": "ulma", "beta": beta, "preference_balance": balance, **fields}


def variants() -> dict[str, dict[str, Any]]:
    """Label -> method spec: the grid of the study."""
    specs: dict[str, dict[str, Any]] = {"base": {"method": "base"}, "sft": {"method": "sft"}, "kto": {"method": "kto"}}
    specs["ulma paper (beta=0.1, plain sum)"] = ulma(balance=None)
    for balance in BALANCES[1:]:
        specs[f"ulma balance={balance}"] = ulma(balance=balance)
    for beta in BETAS[1:]:
        specs[f"ulma paper (beta={beta}, plain sum)"] = ulma(beta, balance=None)
        specs[f"ulma beta={beta} balance={DEFAULT_BALANCE}"] = ulma(beta)
    specs[f"ulma balance={DEFAULT_BALANCE}, summed log-probs"] = ulma(length_normalize=False)
    specs[f"ulma balance={DEFAULT_BALANCE}, reduction=mean"] = ulma(reduction="mean")
    return specs


def plot(summary: dict[str, dict[str, float]], path: Path) -> None:
    """Harm rate and perplexity of good answers against the balance (beta 0.1) and against beta."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    balance_labels = ["ulma paper (beta=0.1, plain sum)"] + [f"ulma balance={b}" for b in BALANCES[1:]]
    beta_curves = {
        "plain sum (paper)": [f"ulma paper (beta={b}, plain sum)" for b in BETAS],
        f"balance {DEFAULT_BALANCE}": [f"ulma balance={DEFAULT_BALANCE}"]
        + [f"ulma beta={b} balance={DEFAULT_BALANCE}" for b in BETAS[1:]],
    }
    metrics = (("harm_rate", "harm rate"), ("perplexity", "perplexity of good answers"))
    figure, axes = plt.subplots(2, 2, figsize=(10, 7))
    for row, (metric, title) in enumerate(metrics):
        curves = [(axes[row, 0], BALANCES, {"ULMA, beta 0.1": balance_labels}, "preference_balance (0.05: paper)")]
        curves.append((axes[row, 1], BETAS, beta_curves, "beta"))
        for axis, xs, lines, xlabel in curves:
            for name, labels in lines.items():
                means = [summary[label][metric] for label in labels]
                spreads = [summary[label][f"{metric}_std"] for label in labels]
                axis.errorbar(xs, means, yerr=spreads, fmt="o-", capsize=3, label=name)
            for anchor, color in (("sft", "gray"), ("kto", "tab:red"), ("base", "black")):
                axis.axhline(summary[anchor][metric], color=color, linestyle=":", label=anchor.upper())
            axis.set_xscale("log")
            axis.set_xlabel(xlabel)
            axis.set_title(title)
    axes[0, 0].legend(fontsize=8)
    axes[0, 1].legend(fontsize=8)
    figure.suptitle("ULMA on the ground-truth benchmark (mean ± std over seeds)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(groundtruth.Settings.seeds))
    parser.add_argument("--learning_rates", nargs="+", type=float, default=list(groundtruth.Settings.learning_rates))
    parser.add_argument("--workdir")
    parser.add_argument("--output", default=str(groundtruth.ROOT / "benchmarks/results/ulma-sensitivity.json"))
    args = parser.parse_args(argv)
    settings = groundtruth.Settings(seeds=tuple(args.seeds), learning_rates=tuple(args.learning_rates))
    output = Path(args.output)
    payload = groundtruth.run_and_save(variants(), settings, args.workdir, output)
    plot(payload["summary"], output.with_suffix(".png"))
    print(f"wrote {output.with_suffix('.png')}")
    return payload


if __name__ == "__main__":
    main()
