"""What a training command leaves on the console and in `output_dir`: the row accounting, the before/after table,
and the run's files (transformers' `trainer_state.json` and `all_results.json`, our `summary.json` and
`training_curves.png`)."""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset


SUMMARY_METRICS = {
    "eval_logps/chosen": "mean log-prob, positives",
    "eval_logps/rejected": "mean log-prob, negatives",
    "eval_rewards/margins": "implicit reward margin",
    "eval_rewards/accuracies": "implicit reward accuracy",
    "eval_loss": "loss",
}
ACCURACY_NOTE = (
    "(accuracy: share of held-out rows whose implicit reward has the sign of their label; chance is 0.5, and a reward"
    " of exactly 0, as every reward before training, counts half)"
)
# Training curves: (panel title, logged keys), from the trainer's log history
CURVES = (
    ("loss", ("loss", "eval_loss", "train_loss")),  # train_loss: the run's mean, logged at its end
    ("implicit rewards", ("rewards/chosen", "rewards/rejected", "rewards/margins")),
    ("implicit reward accuracy", ("rewards/accuracies", "eval_rewards/accuracies")),
)


@dataclass
class RowAccount:
    """Where the rows of a run went, from the file to the batches."""

    source: str
    data_format: str = "point-wise rows"
    rows_read: int = 0
    steps: list[tuple[str, int]] = field(default_factory=list)  # what happened to the rows, in order: (what, rows)
    train_rows: int = 0
    positives: int = 0
    negatives: int = 0
    held_out_rows: int | None = None
    held_out_positives: int | None = None
    held_out_dropped: int = 0

    def lines(self) -> list[str]:
        lines = [f"data: {self.source}, read as {self.data_format}: {self.rows_read} rows"]
        lines += [f"  {what}: {rows} rows" for what, rows in self.steps if rows]
        lines.append(f"  training: {self.train_rows} rows ({self.positives} positives, {self.negatives} negatives)")
        return lines


def count_rows(account: RowAccount, trainer, rows_given: int, held_out_given: int | None = None) -> RowAccount:
    """Fill in what the trainer kept of the ``rows_given`` training rows and ``held_out_given`` held-out rows (map-style
    datasets; a stream is not counted)."""
    threshold, train, held_out = trainer.options.positive_threshold, trainer.train_dataset, trainer.eval_dataset
    if not isinstance(train, Dataset):
        return account
    account.steps.append((f"dropped, prompt fills max_length={trainer.args.max_length}", rows_given - len(train)))
    account.train_rows = len(train)
    account.positives = sum(score >= threshold for score in train["score"])
    account.negatives = account.train_rows - account.positives
    if isinstance(held_out, Dataset):
        account.held_out_rows = len(held_out)
        account.held_out_positives = sum(score >= threshold for score in held_out["score"])
        account.held_out_dropped = (held_out_given or len(held_out)) - len(held_out)
    return account


def summary(trainer_name: str, model: str, account: RowAccount, before: dict, after: dict) -> str:
    """A plain-text report: the row accounting and the held-out figures before and after training."""
    lines = ["", f"{trainer_name} on {model}: {account.train_rows} training rows", *account.lines()]
    if account.held_out_rows is None:
        return "\n".join(lines + ["(no held-out split: pass one with --dataset_test_split or --eval_fraction)"])
    negatives = account.held_out_rows - account.held_out_positives
    cut = f"; {account.held_out_dropped} dropped, prompt fills max_length" if account.held_out_dropped else ""
    lines += [
        f"held-out rows: {account.held_out_rows} ({account.held_out_positives} positives, {negatives} negatives{cut})",
        f"{'':<28}{'before':>10}{'after':>10}",
    ]
    missing = "positives" if account.held_out_positives == 0 else "negatives"
    for key, label in SUMMARY_METRICS.items():
        if key in before and key in after:
            lines.append(f"{label:<28}{before[key]:>10.4f}{after[key]:>10.4f}")
        else:
            lines.append(f"{label:<28}{'-':>10}{'-':>10}  (no {missing} among the held-out rows)")
    if "eval_rewards/accuracies" in before:
        lines.append(ACCURACY_NOTE)
    return "\n".join(lines)


def plot_training_curves(log_history: list[dict[str, Any]], path: Path) -> Path | None:
    """Loss, implicit rewards and accuracy against the step, one panel each; None when nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(title, [k for k in keys if any(k in e for e in log_history)]) for title, keys in CURVES]
    panels = [(title, keys) for title, keys in panels if keys]
    if not panels:
        return None
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for axis, (title, keys) in zip(axes[0], panels, strict=True):
        for key in keys:
            points = [(e["step"], e[key]) for e in log_history if key in e]
            axis.plot(*zip(*points, strict=True), marker="o" if len(points) < 20 else None, label=key)
        axis.set(title=title, xlabel="step")
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_run_files(trainer, train_metrics: dict, before: dict, after: dict, report: dict[str, Any]) -> list[Path]:
    """Save the run's records in `output_dir` (main process only) and return their paths:
    `trainer_state.json` (the log history, as transformers writes it), `train_results.json`, `eval_results.json`
    and `all_results.json` (transformers' `save_metrics`), `summary.json` (before/after and the row accounting) and
    `training_curves.png`."""
    if not trainer.is_world_process_zero():
        return []
    output_dir = Path(trainer.args.output_dir)
    for name in ("train_results.json", "eval_results.json", "all_results.json"):  # `save_metrics` merges into them
        (output_dir / name).unlink(missing_ok=True)
    trainer.save_state()
    trainer.save_metrics("train", train_metrics)
    names = ["trainer_state.json", "train_results.json"]
    if after:
        trainer.save_metrics("eval", after)
        names.append("eval_results.json")
    names.append("all_results.json")
    summary_path = output_dir / "summary.json"
    summary_path.write_text(json.dumps(report | {"before": before, "after": after}, indent=2) + "\n")
    paths = [output_dir / name for name in names] + [summary_path]
    plot = plot_training_curves(trainer.state.log_history, output_dir / "training_curves.png")
    return paths + ([plot] if plot else [])
