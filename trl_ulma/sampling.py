"""Drawing answers from a model and scoring them token by token: generation batched by length (transformers, or vLLM
from a saved model), the exact ids of each sample, its summed log-prob, the KL between two models on a policy's own
samples, and fluency checks."""

import gc
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, GenerationConfig, PreTrainedTokenizerBase, set_seed
from trl.data_utils import _tokenize
from trl.trainer.utils import pad, selective_log_softmax


T = TypeVar("T")
# Every generation setting that reshapes the sampled distribution, at its no-op value: `generate` fills the settings
# a config leaves unset from the model's own generation config (a repetition penalty, min_p, ...)
NEUTRAL_SAMPLING = {
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "min_p": 0.0,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "no_repeat_ngram_size": 0,
    "min_new_tokens": 0,
    "num_beams": 1,
}


@dataclass
class GenerationSettings:
    """How answers are sampled: greedy by default (as the ULMA authors decode); ``seed`` is set before each model."""

    max_new_tokens: int = 128
    max_prompt_length: int = 512
    batch_size: int = 16
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None  # None: the model's generation config applies (transformers' default: top 50); a number:
    # sampling with exactly these settings and none of the model's (0: every token, the model's own distribution)
    seed: int = 0


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def vllm_available() -> bool:
    """Whether vLLM can draw the samples: the package is installed and a GPU is present."""
    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def _stop_ids(tokenizer: PreTrainedTokenizerBase, generation_config: GenerationConfig | None) -> set[int]:
    """The tokens that end an answer: the tokenizer's EOS and the model's generation config's."""
    stop = generation_config.eos_token_id if generation_config is not None else None
    return {tokenizer.eos_token_id} | set(stop if isinstance(stop, list) else [stop] if stop is not None else [])


def _sample(prompt_ids: list[int], generated: Sequence[int], stop: set[int], tokenizer) -> "Sample":
    """A sample from the generated ids: up to and with the first stop token (what follows is padding)."""
    end = next((n + 1 for n, token in enumerate(generated) if token in stop), None)
    completion = list(generated[:end])
    return Sample(prompt_ids, completion, end is not None, tokenizer.decode(completion, skip_special_tokens=True))


def _by_length(lengths: Sequence[int], batch_size: int, run: Callable[[list[int]], Sequence[T]]) -> list[T]:
    """``run(indices)`` on batches of ``batch_size`` indices, longest first so that each batch pads little; its
    results, one per index, back in the indices' order."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    results: list = [None] * len(lengths)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        for i, result in zip(batch, run(batch), strict=True):
            results[i] = result
    return results


@torch.no_grad()
def batch_completion_logps(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's summed log-prob of its completion tokens, and their number, for a right-padded batch."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    logps = selective_log_softmax(logits.float(), input_ids[:, 1:])
    mask = completion_mask[:, 1:].bool()
    return logps.masked_fill(~mask, 0.0).sum(-1), mask.sum(-1)


def _prompt_ids(tokenizer, prompt: Any, max_prompt_length: int) -> list[int]:
    ids = _tokenize(tokenizer, prompt, add_generation_prompt=True)["input_ids"]  # the flag only applies to messages
    return ids[-max_prompt_length:]  # keep the end of a long dialogue, next to the answer


class Sample(NamedTuple):
    """One generated answer: the prompt's token ids, the generated ids (up to and with the first EOS), whether it
    ended with EOS, and its text (decoded without special tokens)."""

    prompt_ids: list[int]
    completion_ids: list[int]
    eos: bool
    text: str


@torch.no_grad()
def sample_completions(
    model, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Any], settings: GenerationSettings, desc: str = ""
) -> list[Sample]:
    """One sample per prompt (text or messages), with its generated token ids; reproducible from ``settings.seed``; a
    progress bar with ``desc``. Batches hold prompts of similar length (less padding); the samples are in the prompts'
    order."""
    set_seed(settings.seed)
    device = next(model.parameters()).device
    stop = _stop_ids(tokenizer, model.generation_config)
    prompt_ids = [_prompt_ids(tokenizer, p, settings.max_prompt_length) for p in prompts]
    options = {
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": settings.do_sample,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": sorted(stop),
    }
    if settings.do_sample:
        options |= {"temperature": settings.temperature, "top_p": settings.top_p}
    if settings.do_sample and settings.top_k is not None:
        # Exactly these settings: none of the model's own (its top_k, a repetition penalty, min_p, ...) reshapes the
        # distribution the samples come from
        options = {"generation_config": GenerationConfig(**options, top_k=settings.top_k, **NEUTRAL_SAMPLING)}
    bar = tqdm(total=len(prompts), desc=desc, unit="sample")

    def run(indices: list[int]) -> list[Sample]:
        ids = [torch.tensor(prompt_ids[i]) for i in indices]
        input_ids = pad(ids, padding_value=tokenizer.pad_token_id, padding_side="left").to(device)
        attention_mask = pad([torch.ones_like(i) for i in ids], padding_side="left").to(device)
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask, **options)
        generated = output[:, input_ids.size(1) :].tolist()
        samples = [_sample(prompt_ids[i], ids, stop, tokenizer) for i, ids in zip(indices, generated, strict=True)]
        bar.update(len(indices))
        return samples

    samples = _by_length([len(ids) for ids in prompt_ids], settings.batch_size, run)
    bar.close()
    return samples


def sample_completions_vllm(
    model_path: str,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Any],
    settings: GenerationSettings,
    gpu_memory_utilization: float = 0.3,
) -> list[Sample]:
    """`sample_completions` with vLLM, from the model saved at ``model_path``: the same prompt ids, stop tokens and
    sampling settings (``top_k`` None or 0: every token; vLLM applies no penalty unless asked), one engine seeded with
    ``settings.seed`` for the whole call (so a prompt repeated K times gets K different samples), as long as a prompt
    and its answer, freed at the end. vLLM's sampler is not transformers', so the samples differ from
    `sample_completions`' for the same seed, and it runs in the model's half precision (vLLM's ``dtype="auto"``)."""
    from vllm import LLM, SamplingParams

    try:
        generation_config = GenerationConfig.from_pretrained(model_path)
    except OSError:  # no generation_config.json: transformers builds one from the model's config
        generation_config = GenerationConfig.from_model_config(AutoConfig.from_pretrained(model_path))
    stop = _stop_ids(tokenizer, generation_config)
    prompt_ids = [_prompt_ids(tokenizer, p, settings.max_prompt_length) for p in prompts]
    options = {"max_tokens": settings.max_new_tokens, "stop_token_ids": sorted(stop), "temperature": 0.0}
    if settings.do_sample:
        options |= {"temperature": settings.temperature, "top_p": settings.top_p, "top_k": settings.top_k or -1}
    max_model_len = settings.max_prompt_length + settings.max_new_tokens  # else the model's own (32k...): KV memory
    llm = LLM(
        model=model_path, seed=settings.seed, gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len
    )
    outputs = llm.generate(
        [{"prompt_token_ids": ids} for ids in prompt_ids], sampling_params=SamplingParams(**options), use_tqdm=True
    )
    samples = []
    for ids, output in zip(prompt_ids, outputs, strict=True):
        completion = output.outputs[0]
        generated = list(completion.token_ids)
        if completion.finish_reason == "stop" and not stop & set(generated):  # a stop token vLLM left out
            reason = completion.stop_reason  # the stop token's id, None for the model's EOS
            generated.append(reason if isinstance(reason, int) else tokenizer.eos_token_id)
        samples.append(_sample(ids, generated, stop, tokenizer))
    del llm, outputs
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return samples


def generate(
    model, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Any], settings: GenerationSettings
) -> list[str]:
    """One answer per prompt (text or messages), decoded without special tokens; reproducible from ``settings.seed``."""
    return [sample.text for sample in sample_completions(model, tokenizer, prompts, settings)]


def sample_kl(
    policy,
    reference,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    batch_size: int = 16,
) -> tuple[float, list[float]]:
    """KL(policy || reference) estimated on samples of the policy: per sample, the sum over its generated tokens of
    log pi - log pi_ref, scored on the generated ids themselves; their mean, and the per-sample values."""
    device = next(policy.parameters()).device
    sequences = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids, strict=True)]
    masks = [[0] * len(p) + [1] * len(c) for p, c in zip(prompt_ids, completion_ids, strict=True)]

    def log_ratios(indices: list[int]) -> list[float]:
        input_ids = pad([torch.tensor(sequences[i]) for i in indices], padding_value=tokenizer.pad_token_id)
        completion_mask = pad([torch.tensor(masks[i]) for i in indices])
        attention_mask = pad([torch.ones(len(sequences[i]), dtype=torch.long) for i in indices])
        batch = [t.to(device) for t in (input_ids, attention_mask, completion_mask)]
        policy_logps, _ = batch_completion_logps(policy, *batch)
        reference_logps, _ = batch_completion_logps(reference, *batch)
        return (policy_logps - reference_logps).tolist()

    values = _by_length([len(s) for s in sequences], batch_size, log_ratios)
    return sum(values) / len(values), values


def _ngrams(ids: Sequence[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]


def repetition_rate(completion_ids: Sequence[Sequence[int]], n: int = 3) -> float:
    """Mean over samples of the share of a sample's token n-grams that repeat an earlier one of the same sample
    (0 for a sample shorter than n): degenerate loops score near 1."""
    rates = []
    for ids in completion_ids:
        grams = _ngrams(ids, n)
        rates.append((len(grams) - len(set(grams))) / len(grams) if grams else 0.0)
    return sum(rates) / len(rates)


def distinct_ngrams(completion_ids: Sequence[Sequence[int]], n: int = 3) -> float:
    """Distinct-n: the share of distinct token n-grams among all the samples' n-grams (1 without any); a policy that
    gives every prompt the same answer scores low."""
    grams = [gram for ids in completion_ids for gram in _ngrams(ids, n)]
    return len(set(grams)) / len(grams) if grams else 1.0
