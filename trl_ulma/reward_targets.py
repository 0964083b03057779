"""From K scored samples per prompt to point-wise rows: the score the trainers fit and which rows are positives.

A reward r(x, y) has no natural threshold between good and bad answers. The KL-regularised optimum
pi* = pi_ref * exp(r / beta) / Z(x) gives r(x, y) = beta * log(pi* / pi_ref) + beta * log Z(x): point-wise DPO fits
beta * log(pi / pi_ref) + baseline to the (scaled) reward, the baseline standing for beta * log Z(x), which depends on
the prompt. To first order in r / beta it is the reference's mean reward at x, and K samples of the same prompt
estimate it by that prompt's mean reward: ``score_baseline="prompt"`` (`trl_ulma.targets`). Samples above their
prompt's mean are raised, those below it lowered, whatever the reward's offset.

Scores: rewards are mapped to [0, 1] by the kept rows' min and max (an affine map, so differences between prompts stay;
the report keeps both ends, so ``score_scale = max - min`` turns a score back into the reward less the min: the fit is
then in the reward's own units, as the reward loop fits it). ULMA also needs positives, rows with
``score >= positive_threshold = 1.0`` that get plain SFT; ``positives`` chooses them:

    "best"        each prompt's highest-reward sample (the first on ties) scores exactly 1.0; the others keep their
                  mapped score, capped below 1 (at 1 - 1e-6)
    "above_mean"  the samples above their prompt's mean reward score 1.0; the others as above
    "none"        no positives: every score < 1 (point-wise DPO on scores)

Samples with reward None (every reward function skipped them) or an empty completion (nothing to train on: the
trainers refuse it) are dropped and counted first. A prompt whose other samples all have the same reward (or that has
one) carries no preference: its rows are dropped and counted. The min and max are taken over the rows kept.

Example: prompt A with rewards 0.8, 0.2, -0.4; prompt B with 0.6, 0.6, 0.0; prompt C with 0.5, 0.5 (dropped:
constant). Min -0.4, max 0.8, so the mapped scores are (r + 0.4) / 1.2: A 1.0, 0.5, 0.0; B 0.833, 0.833, 0.333.

    "best"        A 1.0, 0.5, 0.0; B 1.0, 0.833, 0.333 (the first of B's tied best; a positive although A's 0.8 beats
                  it: the positives are per prompt, the other scores keep the differences between prompts)
    "above_mean"  A 1.0, 0.5, 0.0 (0.2 is A's mean, not above it); B (mean 0.4) 1.0, 1.0, 0.333
    "none"        A 1 - 1e-6, 0.5, 0.0; B 0.833, 0.833, 0.333
"""

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .data import _is_empty, prompt_key


POSITIVES = ("best", "above_mean", "none")
BELOW_ONE = 1 - 1e-6  # the highest score of a row that is not a positive
ROW_COLUMNS = ("prompt", "completion", "score", "reward")


@dataclass
class RowsReport:
    """What became of a round's samples: rows kept (and positives among them), samples without a reward or with an
    empty completion, prompts dropped because all their samples have the same reward (and their rows), and the
    lowest and highest reward kept (the ends of the map to [0, 1]; None without rows)."""

    rows: int = 0
    positives: int = 0
    skipped_none: int = 0
    skipped_empty: int = 0
    constant_prompts: int = 0
    constant_rows: int = 0
    reward_min: float | None = None
    reward_max: float | None = None


def reward_rows(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    rewards: Sequence[float | None],
    positives: str = "best",
    extra_columns: dict[str, Sequence[Any]] | None = None,
) -> tuple[list[dict[str, Any]], RowsReport]:
    """Point-wise rows ``prompt``, ``completion``, ``score``, ``reward`` (the raw reward, for the record) and the
    ``extra_columns``, in the samples' order, and the counts (see the module docstring for the scores)."""
    if positives not in POSITIVES:
        raise ValueError(f"`positives` must be one of {list(POSITIVES)}, got {positives!r}.")
    extra = dict(extra_columns or {})
    if clash := [column for column in extra if column in ROW_COLUMNS]:
        raise ValueError(f"Extra column `{clash[0]}` would overwrite a row's own column: rename it.")
    for name, values in {"completions": completions, "rewards": rewards, **extra}.items():
        if len(values) != len(prompts):
            raise ValueError(f"{len(values)} {name} for {len(prompts)} prompts: give one per sample.")

    report = RowsReport()
    groups: dict[str, list[int]] = {}
    for i, (prompt, reward) in enumerate(zip(prompts, rewards, strict=True)):
        if reward is None:
            report.skipped_none += 1
        elif _is_empty(completions[i]):
            report.skipped_empty += 1
        else:
            groups.setdefault(prompt_key(prompt), []).append(i)
    informative = []
    for members in groups.values():
        if len({rewards[i] for i in members}) > 1:
            informative.append(members)
        else:
            report.constant_prompts += 1
            report.constant_rows += len(members)
    if not informative:
        return [], report

    kept = sorted(i for members in informative for i in members)
    low, high = min(rewards[i] for i in kept), max(rewards[i] for i in kept)
    positive: set[int] = set()
    for members in informative:
        if positives == "best":
            positive.add(max(members, key=lambda i: rewards[i]))  # max keeps the first of equal rewards
        elif positives == "above_mean":
            total = sum(Fraction(rewards[i]) for i in members)  # exact: a sample at its prompt's mean is not above
            positive.update(i for i in members if Fraction(rewards[i]) * len(members) > total)
    rows = []
    for i in kept:
        score = 1.0 if i in positive else min((rewards[i] - low) / (high - low), BELOW_ONE)
        row = {"prompt": prompts[i], "completion": completions[i], "score": score, "reward": rewards[i]}
        rows.append(row | {column: values[i] for column, values in extra.items()})
    report.rows, report.positives = len(rows), len(positive)
    report.reward_min, report.reward_max = low, high
    return rows, report
