"""Reward functions as TRL's GRPO takes them: resolved from names, called and combined with checks.

A reward function is a callable ``f(prompts, completions, **columns) -> list[float | None]``, called with keywords:
``prompts`` and ``completions`` (text, or lists of messages for conversational prompts), ``completion_ids`` (the
generated token ids) and the prompt dataset's other columns, one value per sample. ``None`` means the function does
not apply to that sample. Several functions are combined by ``reward_weights`` into a weighted sum over the functions
that returned a number; a sample that every function skips gets no reward (None), as in GRPO.
"""

import functools
import importlib
import inspect
import math
import numbers
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from trl.data_utils import apply_chat_template, is_conversational
from trl.trainer.utils import get_callable_name, pad

from .evaluation import completion_text
from .sampling import _by_length, _device


RewardFunc = Callable[..., Sequence[float | None]]


def trl_reward_names() -> list[str]:
    """The reward functions and factories `trl.rewards` exports (factories are named ``get_*``)."""
    import trl.rewards

    return sorted(name for name in dir(trl.rewards) if inspect.isfunction(getattr(trl.rewards, name)))


def _trl_reward(name: str) -> RewardFunc:
    """``trl.rewards.<name>``; a factory (``get_*``) is called with its default arguments."""
    import trl.rewards

    func = getattr(trl.rewards, name)
    if not name.startswith("get_"):
        return func
    required = [p.name for p in inspect.signature(func).parameters.values() if p.default is inspect.Parameter.empty]
    if required:
        raise ValueError(
            f"Reward {name!r} is a factory that needs {', '.join(required)}: call it in a module of yours "
            f"(`my_rewards.py`: `reward = {name}(...)`) and pass that dotted path (`my_rewards.reward`)."
        )
    return func()


def _import_reward(path: str) -> RewardFunc:
    """The callable at a dotted path ``module.sub.func``, importable from the working directory too."""
    module_name, attribute = path.rsplit(".", 1)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        func = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"Cannot import reward function {path!r}: {type(error).__name__}: {error}.") from error
    if not callable(func):
        raise ValueError(f"Reward function {path!r} is a {type(func).__name__}, not a callable.")
    return func


class RewardModel:
    """A sequence-classification reward model as a reward function: the logit of class 0 of each prompt + completion,
    tokenized as TRL's GRPO does (conversational samples through the chat template, no added special tokens)."""

    def __init__(self, path: str, batch_size: int = 16):
        self.name, self.batch_size = str(path), batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
        self.model.config.get_text_config().pad_token_id = self.tokenizer.pad_token_id  # it reads the last non-pad
        self.model.to(_device()).eval()

    @torch.no_grad()
    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs) -> list[float]:
        if is_conversational({"prompt": prompts[0]}):
            texts = [
                apply_chat_template({"messages": p + c}, self.tokenizer)["text"]
                for p, c in zip(prompts, completions, strict=True)
            ]
        else:
            texts = [p + c for p, c in zip(prompts, completions, strict=True)]
        ids = [torch.tensor(self.tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]

        def score(indices: list[int]) -> list[float]:
            batch = [ids[i] for i in indices]
            input_ids = pad(batch, padding_value=self.tokenizer.pad_token_id, padding_side="right")
            attention_mask = pad([torch.ones_like(i) for i in batch], padding_side="right")
            device = self.model.device
            logits = self.model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
            return logits[:, 0].float().tolist()

        return _by_length([len(i) for i in ids], self.batch_size, score)


def load_reward_funcs(names: Sequence[str], reward_model_name_or_path: str | None = None) -> list[RewardFunc]:
    """Reward functions from names, as `trl grpo --reward_funcs` takes them: a function of `trl.rewards` (e.g.
    ``think_format_reward``), or a dotted import path ``module.func``; a reward model path first, when given."""
    funcs: list[RewardFunc] = [RewardModel(reward_model_name_or_path)] if reward_model_name_or_path else []
    known = trl_reward_names()
    for name in names:
        if name in known:
            funcs.append(_trl_reward(name))
        elif "." in name:
            funcs.append(_import_reward(name))
        else:
            raise ValueError(
                f"Unknown reward function {name!r}: expected one of trl.rewards ({', '.join(known)}) or a dotted "
                "import path (`my_rewards.reward`, importable from the working directory)."
            )
    if not funcs:
        raise ValueError("No reward: pass reward function names, a reward model path, or both.")
    return funcs


def reward_name(func: Callable) -> str:
    """How messages and ``loop.json`` name a reward function: ``module.function``, a callable object by its class, a
    reward model by its path."""
    while isinstance(func, functools.partial):
        func = func.func
    if isinstance(func, RewardModel):
        return func.name
    if inspect.isfunction(func) or inspect.ismethod(func):
        return f"{func.__module__}.{func.__qualname__}"
    return get_callable_name(func)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _checked(func: RewardFunc, output: Any, expected: int) -> list[float | None]:
    """``output`` as a list of ``expected`` finite numbers or None, or one line naming ``func`` and what is wrong."""
    if hasattr(output, "tolist"):  # a NumPy array or a tensor
        output = output.tolist()
    if not isinstance(output, (list, tuple)):
        problem = f"returned a {type(output).__name__}"
    elif len(output) != expected:
        problem = f"returned {len(output)} rewards"
    else:
        bad = next(
            (
                (i, v)
                for i, v in enumerate(output)
                if v is not None and not (isinstance(v, numbers.Real) and math.isfinite(v))
            ),
            None,
        )
        if bad is None:
            return [None if v is None else float(v) for v in output]
        problem = f"returned {_one_line(repr(bad[1]))[:60]} for sample {bad[0]} (a reward is a finite number, or None)"
    raise ValueError(
        f"Reward function {reward_name(func)} {problem}; expected a list of {expected} numbers or None (one per "
        "completion; None skips a sample)."
    )


def score_completions(
    funcs: Sequence[RewardFunc],
    weights: Sequence[float] | None,
    prompts: Sequence[Any],
    completions: Sequence[Any],
    columns: dict[str, list] | None = None,
) -> list[float | None]:
    """Each sample's reward: the ``weights``-weighted sum (default all 1.0) of the rewards of the functions that
    returned a number for it, or None where every function returned None (GRPO's rule).

    Each function is called as ``f(prompts=..., completions=..., **columns)``. A function that raises, or returns
    something other than one finite number or None per sample, stops the loop with one ValueError line naming it.
    """
    weights = [1.0] * len(funcs) if weights is None else list(weights)
    if len(weights) != len(funcs):
        raise ValueError(f"{len(weights)} reward weights for {len(funcs)} reward functions: give one per function.")
    columns = columns or {}
    n = len(prompts)
    totals: list[float | None] = [None] * n
    for func, weight in zip(funcs, weights, strict=True):
        try:
            output = func(prompts=list(prompts), completions=list(completions), **columns)
        except Exception as error:  # noqa: BLE001 (a user's function: its error, named, on one line)
            raise ValueError(
                f"Reward function {reward_name(func)} raised {type(error).__name__}: {_one_line(error)[:300]} "
                f"(called on {n} samples)."
            ) from error
        for i, value in enumerate(_checked(func, output, n)):
            if value is not None:
                totals[i] = (totals[i] or 0.0) + weight * value
    return totals


@functools.cache
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_sentiment(prompts: Sequence[Any], completions: Sequence[Any], **kwargs) -> list[float]:
    """VADER's compound sentiment of each completion's text (messages: the last one's content), in [-1, 1]: an offline
    reward (`pip install vadersentiment`)."""
    return [_vader().polarity_scores(completion_text(c))["compound"] for c in completions]
