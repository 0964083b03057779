"""`PointwiseDPOTrainer`: DPO's implicit reward fitted to point-wise labels or scores, as a `trl.DPOTrainer`.

The math lives in `trl_ulma.losses`; this module is the plumbing: data preparation, batching, the policy and
reference forwards (TRL's fused LM head, no full-vocabulary logits), reference precompute and metrics.
"""

import contextlib
import copy
import functools
import hashlib
import math
import os
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import torch
from accelerate.logging import get_logger
from accelerate.utils import broadcast_object_list, gather_object, is_peft_model, tqdm
from datasets import Dataset, IterableDataset
from datasets.fingerprint import Hasher
from torch.utils.data import DataLoader
from transformers import AutoProcessor, PreTrainedTokenizerBase, ProcessorMixin
from transformers.data.data_collator import DataCollatorMixin
from transformers.integrations import is_deepspeed_zero3_enabled
from trl import DPOConfig, DPOTrainer
from trl.data_utils import is_conversational
from trl.models import prepare_deepspeed
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import get_config_model_id, global_then_local_main_first, pad, use_adapter

from .data import column_names, infer_score_type, to_pointwise
from .layout import PromptGroupSampler, build_layout, rows_from_batch, supports_packed_layout, truncate_row
from .losses import GroupCounts, LossOutput, batch_counts, reduce_groups, sequence_logps
from .objectives import PointwiseDPO, Targets
from .pointwise_dpo_config import PointwiseDPOConfig
from .preparation import PromptFitsFilter, add_eos, report_lengths, report_prompt_cuts, tokenize_row
from .targets import baseline_offset, loss_weighted_mean, prompt_baselines, resolve_scale, score_std


logger = get_logger(__name__)

ULMA_PAPER = {
    "title": "ULMA: Unified Language Model Alignment with Human Demonstration and Point-wise Preference",
    "id": "2312.02554",
    "citation": """\
@article{cai2023ulma,
    title        = {{ULMA: Unified Language Model Alignment with Human Demonstration and Point-wise Preference}},
    author       = {Tianchi Cai and Xierui Song and Jiyan Jiang and Fei Teng and Jinjie Gu and Guannan Zhang},
    year         = 2023,
    journal      = {arXiv preprint arXiv:2312.02554}
}""",
}

# DPOConfig options that only make sense for pairs, with their defaults: a point-wise trainer refuses other values
# rather than silently ignoring them.
_PAIRWISE_ONLY_OPTIONS = {
    "loss_type": ["sigmoid"],
    "loss_weights": None,
    "ld_alpha": None,
    "use_weighting": False,
    "f_divergence_type": "reverse_kl",
    "label_smoothing": 0.0,
}


@dataclass
class DataCollatorForPointwisePreference(DataCollatorMixin):
    """Pads point-wise examples into one row per example (not DPO's doubled chosen/rejected batch).

    Each example has ``prompt_ids``, ``completion_ids``, ``score`` and optionally ``ref_logps`` and ``log_z``.
    Returns ``input_ids``, ``attention_mask``, ``completion_mask`` (1 on completion tokens), all right-padded,
    ``score`` as a float tensor and ``ref_logps`` / ``log_z`` when present. Sequences are truncated to
    ``max_length`` before padding, keeping the start (``keep_start``) or the end (``keep_end``).
    """

    pad_token_id: int
    max_length: int | None = None
    truncation_mode: str = "keep_start"
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if self.truncation_mode not in ("keep_start", "keep_end"):
            raise ValueError(f"`truncation_mode` must be 'keep_start' or 'keep_end', got {self.truncation_mode!r}.")
        ids, completion_masks = [], []
        for example in examples:
            sequence, mask = truncate_row(
                example["prompt_ids"], example["completion_ids"], self.max_length, self.truncation_mode
            )
            ids.append(torch.tensor(sequence, dtype=torch.long))
            completion_masks.append(torch.tensor(mask, dtype=torch.long))

        def right_pad(tensors: list[torch.Tensor], value: int) -> torch.Tensor:
            return pad(tensors, padding_value=value, padding_side="right", pad_to_multiple_of=self.pad_to_multiple_of)

        output = {
            "input_ids": right_pad(ids, self.pad_token_id),
            "attention_mask": right_pad([torch.ones_like(t) for t in ids], 0),
            "completion_mask": right_pad(completion_masks, 0),
            "score": torch.tensor([float(example["score"]) for example in examples], dtype=torch.float32),
        }
        for key in ("ref_logps", "log_z"):
            if key in examples[0]:
                output[key] = torch.tensor([example[key] for example in examples], dtype=torch.float32)
        return output


class TokenOutputs(NamedTuple):
    """A forward's per-token results, (B, T) per row whatever the layout: the log-prob of each scored (completion)
    token, and for metrics its entropy, mean logit and whether it is the top-1 prediction (None when the fused head
    did not compute them). ``mask`` marks the scored tokens; ``outputs`` is the model's output (for its aux loss)."""

    log_probs: torch.Tensor
    mask: torch.Tensor
    entropy: torch.Tensor | None
    mean_logits: torch.Tensor | None
    is_top1: torch.Tensor | None
    outputs: Any


class PointwiseDPOTrainer(DPOTrainer):
    """Point-wise DPO (arXiv 2312.02554): DPO's implicit reward fitted to a label or score per example.

    A drop-in `trl.DPOTrainer`: the same constructor, `ref_model` / PEFT / precompute / DeepSpeed handling, eval and
    model card. It also accepts DPO's paired datasets (each pair becomes a positive and a negative row). See
    `PointwiseDPOConfig` for the loss options and `trl_ulma.data` for the row format.

    Example:
    ```python
    >>> from trl_ulma import PointwiseDPOConfig, PointwiseDPOTrainer
    >>> trainer = PointwiseDPOTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", args=PointwiseDPOConfig("out"),
    ...                               train_dataset=dataset)  # prompt, completion, label or score
    >>> trainer.train()
    ```
    """

    _tag_names = ["trl", "trl-ulma", "ulma", "pointwise-dpo"]
    _name = "Point-wise DPO"
    _paper = ULMA_PAPER
    _config_class = PointwiseDPOConfig
    _objective_class = PointwiseDPO  # the method (`trl_ulma.objectives`); built by `_fit_targets`
    _eval_totals: torch.Tensor | None = None  # the evaluation's summed `_row_stats`
    _eval_engine = None  # the DeepSpeed engine an evaluation before `train` runs in

    def __init__(
        self,
        model,
        ref_model=None,
        args: DPOConfig | None = None,
        data_collator=None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset=None,
        processing_class: PreTrainedTokenizerBase | ProcessorMixin | None = None,
        compute_metrics=None,
        callbacks=None,
        optimizers=(None, None),
        quantization_config=None,
        peft_config=None,
    ):
        if args is None:
            model_name = model if isinstance(model, str) else get_config_model_id(model.config)
            args = self._config_class(f"{model_name.split('/')[-1]}-{type(self).__name__.removesuffix('Trainer')}")
        for option, default in _PAIRWISE_ONLY_OPTIONS.items():
            if getattr(args, option) != default:
                raise ValueError(
                    f"`{option}={getattr(args, option)!r}` is a pairwise DPO option that {type(self).__name__} does "
                    f"not use. Leave it at its default ({default!r}); the point-wise loss is set by "
                    f"{self._config_class.__name__} (score_type, reduction, ...)."
                )
        if train_dataset is None:
            raise ValueError("`train_dataset` is required")
        columns = column_names(train_dataset)
        if "image" in columns or "images" in columns:
            raise NotImplementedError(f"{type(self).__name__} does not support vision datasets yet.")

        # Options a plain DPOConfig lacks (a DPOTrainer script with the class swapped) take the config's defaults
        for option in fields(self._config_class):
            if option.name not in {f.name for f in fields(DPOConfig)}:
                setattr(self, option.name, getattr(args, option.name, option.default))
        self.score_type = self.score_type or infer_score_type(columns)
        if self.length_normalize is None:  # labels: the sum; continuous scores: the per-token mean (the config's doc)
            self.length_normalize = self.score_type == "continuous"
        if self.score_type == "binary" and not 0 < self.positive_threshold <= 1:
            raise ValueError(
                f"`positive_threshold={self.positive_threshold}` with labels in [0, 1] makes every row a "
                f"{'negative' if self.positive_threshold > 1 else 'positive'}: use a value in (0, 1] (default 1.0)."
            )
        if self.score_baseline == "prompt" and isinstance(train_dataset, IterableDataset):
            raise ValueError(
                "`score_baseline='prompt'` groups the rows by prompt, which a stream cannot: use a map-style Dataset, "
                "or score_baseline='mean' (estimated on the stream's first rows) or a number."
            )

        # A model built in memory has no name to load its tokenizer or, as DPOTrainer would, its reference from
        in_memory = not isinstance(model, str) and not get_config_model_id(model.config)
        if in_memory and processing_class is None:
            raise ValueError(
                f"{type(self).__name__}: the model was built in memory, so its tokenizer cannot be loaded from its "
                "name: pass `processing_class=tokenizer`."
            )
        # As DPOTrainer decides it: no reference model with PEFT (adapters off), nor with precomputed log-probs
        needs_reference = in_memory and ref_model is None and peft_config is None and not is_peft_model(model)
        if needs_reference and (not args.precompute_ref_log_probs or args.fsdp):
            if is_deepspeed_zero3_enabled():
                raise ValueError(
                    f"{type(self).__name__}: under DeepSpeed ZeRO-3 a model built in memory is partitioned and cannot "
                    "be copied as the reference: pass `ref_model=` (or the model's path as `model`)."
                )
            ref_model = copy.deepcopy(model).requires_grad_(False).eval()  # the reference is the model as passed

        # The point-wise collator is built before `DPOTrainer.__init__`, which would otherwise build the paired one
        # and which already uses the collator when it precomputes reference log-probs.
        if processing_class is None:
            model_id, revision = model, (args.model_init_kwargs or {}).get("revision")
            if not isinstance(model, str):
                model_id, revision = get_config_model_id(model.config), None
            processing_class = AutoProcessor.from_pretrained(
                model_id, revision=revision, trust_remote_code=args.trust_remote_code
            )
        if not isinstance(processing_class, PreTrainedTokenizerBase):
            raise NotImplementedError(f"{type(self).__name__} supports text tokenizers only, not processors.")
        # As DPOTrainer does when it builds its collator (this one is built first): the deprecated `pad_token` option
        pad_token = args.pad_token or processing_class.pad_token or processing_class.eos_token
        if pad_token not in processing_class.get_vocab():
            raise ValueError(f"`pad_token={pad_token!r}` is not in the tokenizer's vocabulary: pick one of its tokens.")
        processing_class.pad_token = pad_token
        if data_collator is None:
            data_collator = DataCollatorForPointwisePreference(
                pad_token_id=processing_class.pad_token_id,
                max_length=args.max_length,
                truncation_mode=args.truncation_mode,
                pad_to_multiple_of=args.pad_to_multiple_of,
            )
        super().__init__(
            model=model,
            ref_model=ref_model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
            quantization_config=quantization_config,
            peft_config=peft_config,
        )
        self._fit_targets()

    # ------------------------------------------------------------------------------------------------------------
    # Data
    # ------------------------------------------------------------------------------------------------------------
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if "prompt_ids" in column_names(dataset):  # already prepared (`evaluate` calls this again)
            return dataset
        map_kwargs = {"num_proc": args.dataset_num_proc} if isinstance(dataset, Dataset) else {}
        with global_then_local_main_first():
            dataset = to_pointwise(dataset, self.score_type, map_kwargs)
            if not is_conversational(next(iter(dataset))):
                dataset = dataset.map(add_eos, fn_kwargs={"eos_token": self._tokenizer.eos_token}, **map_kwargs)
            dataset = dataset.map(tokenize_row, fn_kwargs={"processing_class": processing_class}, **map_kwargs)
            if isinstance(dataset, Dataset):
                report_prompt_cuts(dataset, dataset_name)
                report_lengths(dataset, args.max_length, args.truncation_mode, dataset_name)
            if args.max_length is not None and args.truncation_mode == "keep_start":
                # As in TRL: a prompt filling `max_length` would leave no completion token to learn from
                if isinstance(dataset, Dataset):
                    rows = len(dataset)
                    dataset = dataset.filter(lambda row: len(row["prompt_ids"]) < args.max_length, **map_kwargs)
                    if rows and not len(dataset):
                        raise ValueError(
                            f"{dataset_name} dataset: every one of its {rows} rows has a prompt of >= "
                            f"max_length={args.max_length} tokens, so no row is left. Raise `max_length` "
                            "(--max_length) or use truncation_mode='keep_end' (--truncation_mode keep_end)."
                        )
                else:  # streamed: counted as the rows pass
                    dataset = dataset.filter(PromptFitsFilter(args.max_length, dataset_name))
        if self.score_baseline == "prompt" and hasattr(self, "_mean_score"):  # an eval set given to `evaluate`
            dataset = self._add_row_log_z(dataset)
        return dataset

    _STREAM_ROWS = 1024  # a stream's baseline and scale are estimated on its first rows

    def _training_scores(self) -> list[float]:
        if isinstance(self.train_dataset, IterableDataset):
            scores = [row["score"] for row in self.train_dataset.take(self._STREAM_ROWS)]
            message = f"score_baseline / score_scale: estimated on the stream's first {len(scores)} rows."
            logger.info(message, main_process_only=True)
            return scores
        return list(self.train_dataset["score"])

    def _fit_targets(self) -> None:
        """Once, on the prepared training set: warn when a group is missing; fix the baseline (`_log_z`) and the
        continuous scale (`_score_scale`) from the training scores (`trl_ulma.targets`); warn, as KTO does, when
        unbalanced labels meet the paper's baseline; build the objective (`self.objective`)."""
        objective = self._objective_class
        scores = self._training_scores()
        rows = len(scores)
        positives = sum(score >= self.positive_threshold for score in scores)
        if positives in (0, rows):
            missing = "positive" if positives == 0 else "negative"
            logger.warning(
                f"The training set has no {missing} examples (score {'>=' if missing == 'positive' else '<'} "
                f"positive_threshold={self.positive_threshold}): {type(self).__name__} "
                f"{objective.without[missing]}",
                main_process_only=True,
            )
        self._mean_score = loss_weighted_mean(scores, self.positive_threshold, self.reduction)
        self._score_std = score_std(scores)
        self._score_scale, self._log_z = 1.0, self.log_z
        if objective.fits_reward:
            self._fit_reward_targets(scores, positives)
        targets = Targets(self._log_z, self._score_scale, self._score_std, self._mean_score)
        self.objective = objective.build(self, targets)

    def _fit_reward_targets(self, scores: list[float], positives: int) -> None:
        """The baseline and the scale of an objective that fits an implicit reward; the unbalanced-labels warning."""
        rows = len(scores)
        if self.score_type == "continuous":
            self._score_scale = resolve_scale(self.score_scale, self.beta, scores)
        baseline = self._mean_score if self.score_baseline in ("mean", "prompt") else self.score_baseline
        if baseline != "none":
            self._log_z = self.log_z + baseline_offset(baseline, self.score_type, self._score_scale)
            logger.info(
                f"score_baseline={self.score_baseline!r}: baseline score {baseline:.4f}, log_z = {self._log_z:.4f}"
                + (f", score_scale = {self._score_scale:.4f}" if self.score_type == "continuous" else ""),
                main_process_only=True,
            )
        if self.score_baseline == "prompt":
            self.train_dataset = self._add_row_log_z(self.train_dataset)
            if isinstance(self.eval_dataset, dict):
                self.eval_dataset = {name: self._add_row_log_z(d) for name, d in self.eval_dataset.items()}
            elif self.eval_dataset is not None:
                self.eval_dataset = self._add_row_log_z(self.eval_dataset)
        prior = sum(scores) / rows
        log_odds = baseline_offset(prior, "binary", 1.0)
        if (
            self._objective_class.logistic_on_every_row
            and self.score_type == "binary"
            and baseline == "none"
            and abs(log_odds) > math.log(2)
            and self.reduction == "mean"
            and self.log_z == 0
        ):
            logger.warning(
                f"Unbalanced labels: {positives} of {rows} training rows are positive (mean label "
                f"{prior:.2f}). With score_baseline='none' and log_z=0 the logistic fit pulls every "
                f"implicit reward toward the prior log-odds {log_odds:+.2f}, "
                f"{'below' if log_odds < 0 else 'above'} the reference for all completions alike, which the model "
                "reaches by moving what all answers share. Set "
                "score_baseline='mean' (log_z at the prior log-odds) or reduction='per_group' (each group weighted "
                "equally).",
                main_process_only=True,
            )

    def _add_row_log_z(self, dataset):
        """``dataset`` with a ``log_z`` column: log_z plus each row's per-prompt baseline (`score_baseline='prompt'`;
        the dataset's own prompts, with the training set's mean)."""
        if isinstance(dataset, IterableDataset) or "log_z" in dataset.column_names:
            return dataset
        prompts = [tuple(ids) for ids in dataset["prompt_ids"]]
        baselines = prompt_baselines(dataset["score"], prompts, self._mean_score)
        offsets = [self.log_z + baseline_offset(b, self.score_type, self._score_scale) for b in baselines]
        return dataset.add_column("log_z", offsets)

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["prompt_ids", "completion_ids", "score", "ref_logps", "log_z"]

    # ------------------------------------------------------------------------------------------------------------
    # Layout (`trl_ulma.layout`): how a batch's rows go through the model
    # ------------------------------------------------------------------------------------------------------------
    @functools.cached_property
    def _layout_mode(self) -> str:
        """``layout`` if the policy and the reference model can take it, else "padded" (with a warning). Decided at
        the first forward (reference precompute runs inside `DPOTrainer.__init__`)."""
        if self.layout == "padded":
            return "padded"
        for model in (self.model, self.ref_model):
            if model is None:
                continue
            # A DeepSpeed engine's own `config` is DeepSpeed's: look at the model inside
            fits, why = supports_packed_layout(self.accelerator.unwrap_model(model), self.args.max_length)
            if not fits:
                logger.warning(f"layout={self.layout!r} falls back to padded batches: {why}.", main_process_only=True)
                return "padded"
        return self.layout

    def _get_train_sampler(self, train_dataset=None):
        """With the shared-prompt layout and the default random order: a random order that keeps each prompt's rows
        together (`PromptGroupSampler`), so that batches hold prompts with several completions."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if (
            self._layout_mode != "shared_prompt"
            or self.args.train_sampling_strategy != "random"
            or not isinstance(dataset, Dataset)
        ):
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return PromptGroupSampler([tuple(ids) for ids in dataset["prompt_ids"]], seed)

    def _forward_tokens(self, model, inputs: dict[str, torch.Tensor]) -> TokenOutputs:
        """The model's per-token results on the completions of a padded batch, through the trainer's layout."""
        completion_mask = inputs["completion_mask"]
        if self._layout_mode == "padded":
            labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
            kwargs = self._model_kwargs(inputs)
            if self.aux_loss_enabled:
                kwargs["output_router_logits"] = True
            outputs = model(**kwargs, labels=labels, fused_lm_head=True)
            token_mask = completion_mask[:, 1:]
            width = token_mask.size(1)  # prompt-learning PEFT prepends virtual tokens: keep the real tokens' positions

            def tokens(values):
                return None if values is None else values[:, -width:]

        else:
            rows = rows_from_batch(inputs["input_ids"], inputs["attention_mask"], completion_mask)
            pad = self.data_collator.pad_token_id if hasattr(self.data_collator, "pad_token_id") else 0
            layout = build_layout(rows, self._layout_mode, pad_token_id=pad).to(completion_mask.device)
            unwrapped = self.accelerator.unwrap_model(model)
            kwargs = layout.model_inputs(unwrapped.config._attn_implementation, unwrapped.dtype)
            outputs = model(**kwargs, labels=layout.labels(), use_cache=False, fused_lm_head=True)
            token_mask = layout.token_mask()

            def tokens(values):
                return None if values is None else layout.row_tokens(values)

        return TokenOutputs(
            tokens(outputs.log_probs),
            token_mask,
            tokens(outputs.entropy),
            tokens(outputs.mean_logits),
            tokens(outputs.is_top1),
            outputs,
        )

    # ------------------------------------------------------------------------------------------------------------
    # Reference log-probs
    # ------------------------------------------------------------------------------------------------------------
    def compute_ref_log_probs(self, model, inputs) -> torch.Tensor:
        """Summed reference log-prob of each completion in a padded batch, shape (B,)."""
        adapter_context = contextlib.nullcontext()
        if self.ref_model is None and is_peft_model(self.model):
            # New adapter: the reference is the base model (adapters off); retrained adapter: its frozen "ref" copy
            unwrapped = self.accelerator.unwrap_model(self.model)
            adapter_context = use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
        with (
            torch.no_grad(),
            disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
            adapter_context,
            self.accelerator.autocast(),
        ):
            tokens = self._forward_tokens(model, inputs)
        return sequence_logps(tokens.log_probs, tokens.mask, length_normalize=False)

    def _precompute_ref_logps(self, dataset: Dataset, name: str, batch_size: int) -> Dataset:
        """Add a ``ref_logps`` column (summed reference log-probs), cached on disk by dataset and model.

        Rank 0 alone reads and writes the cache; the values reach the other ranks by collectives, never by file: an
        in-memory dataset's cache directory is a per-process temporary directory, and nodes need not share a disk.
        """
        if isinstance(dataset, IterableDataset):
            raise ValueError("`precompute_ref_log_probs=True` needs a map-style Dataset, not an IterableDataset.")
        if "ref_logps" in dataset.column_names:
            return dataset
        mode = "train" if dataset is self.train_dataset else "eval"  # an eval split may be named "train"
        # The collator's truncation decides which tokens are scored and the scope which rows: both key the cache
        key = (
            dataset._fingerprint,
            self._precompute_model_hash if self._zero_stage() != 3 else self._zero3_model_hash(),
            self.args.max_length,
            self.args.truncation_mode,
            self._objective_class.reference_scope(self, mode),
            # which rows are negatives, and so scored when the scope is "negatives"
            self.positive_threshold,
            self.score_type,
        )
        # Rank 0 names the cache and decides whether it exists, so that every rank takes the same branch (only one
        # runs collectives): an in-memory dataset's fingerprint is random, different on each rank
        fingerprint = Hasher.hash(("trl-ulma-ref-logps", key))
        cache_file = dataset._get_cache_file_path(fingerprint)
        cached = [os.path.exists(cache_file)]
        broadcast_object_list(cached, from_process=0)
        if cached[0]:
            values = [list(Dataset.from_file(cache_file)["ref_logps"]) if self.accelerator.is_main_process else None]
            broadcast_object_list(values, from_process=0)
            return dataset.add_column("ref_logps", values[0])

        loader = self.accelerator.prepare(
            DataLoader(dataset, batch_size=batch_size, collate_fn=self.data_collator, shuffle=False)
        )
        if self.ref_model is None and self.is_deepspeed_enabled:
            model = self._inference_engine()
        else:
            model = self.ref_model if self.ref_model is not None else self.model
        logps = [
            self.accelerator.gather_for_metrics(self._reference_logps(model, batch, mode)).cpu()
            for batch in tqdm(loader, desc=f"Computing reference log-probs for the {name} dataset")
        ]
        logps = torch.cat(logps).tolist()  # gathered: the same on every rank
        if self.accelerator.is_main_process:
            Dataset.from_dict({"ref_logps": logps}).map(new_fingerprint=fingerprint, cache_file_name=cache_file)
        return dataset.add_column("ref_logps", logps)

    def _inference_engine(self):
        """The policy in a DeepSpeed inference engine, for forwards before `train` builds the training engine.

        Before `train`, DeepSpeed parameters are not placed (ZeRO-1/2) or not gathered (ZeRO-3). TRL's
        `prepare_deepspeed` builds an engine on a copy of the DeepSpeed config (stage 0 below ZeRO-3), built once and
        kept apart from the trainer's own engine, which `train` then builds as if nothing had run before.
        """
        if self._precompute_engine is None:
            self._precompute_engine = prepare_deepspeed(self.model, self.accelerator)
        return self._precompute_engine

    def _zero3_model_hash(self) -> str:
        """The reference model's hash under ZeRO-3, where TRL's (of `state_dict()`) sees only empty placeholders, the
        same for any weights: each rank hashes its own shards, and the ranks' digests are combined."""
        digest = hashlib.sha256()
        reference = self.ref_model if self.ref_model is not None else self.model
        for name, param in sorted(reference.named_parameters()):
            digest.update(name.encode())
            digest.update(getattr(param, "ds_tensor", param).detach().float().cpu().numpy().tobytes())
        return Hasher.hash(gather_object([digest.hexdigest()]))

    def _reference_logps(self, model, inputs, mode: str) -> torch.Tensor:
        """Summed reference log-probs (B,), computed only on the rows the loss reads; NaN elsewhere."""
        scope = self._objective_class.reference_scope(self, mode)
        if scope == "all":
            return self.compute_ref_log_probs(model, inputs)
        logps = torch.full_like(inputs["score"], float("nan"))
        if scope == "none":
            return logps
        rows = (inputs["score"] < self.positive_threshold).nonzero().flatten()
        if len(rows) > 0:
            logps[rows] = self.compute_ref_log_probs(model, _select_rows(inputs, rows)).to(logps.dtype)
        elif self.is_fsdp_enabled or (self.is_deepspeed_enabled and self._zero_stage() == 3):
            # There a forward gathers parameters across ranks: every rank runs one, even with no row to score
            self.compute_ref_log_probs(model, _select_rows(inputs, rows.new_zeros(1)))
        return logps

    def _zero_stage(self) -> int | None:
        plugin = self.accelerator.state.deepspeed_plugin
        return None if plugin is None else plugin.zero_stage

    def _group_counts(self, batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """`GroupCounts` of ``batches`` summed over them and over ranks, divided by their number times the number of
        ranks, as a tensor (see `GroupCounts`): each batch's loss then carries its share of the means over them all."""
        counts = [batch_counts(b["score"], self.positive_threshold, b["completion_mask"][:, 1:]) for b in batches]
        device = batches[0]["score"].device
        local = torch.tensor([sum(column) for column in zip(*counts)], dtype=_float_dtype(device), device=device)
        return self.accelerator.gather(local[None]).sum(0) / (self.accelerator.num_processes * len(batches))

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """Also give each micro-batch the group counts of its whole optimizer step, all the micro-batches of the
        gradient-accumulation window on every rank: its losses then add up to the loss of one big batch."""
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        if batch_samples:
            counts = self._group_counts(batch_samples)
            for batch in batch_samples:
                batch["group_counts"] = counts
                # The step's own counts (positives, negatives), logged as `count/*`
                batch["step_counts"] = counts[:2] * self.accelerator.num_processes * len(batch_samples)
        return batch_samples, num_items_in_batch

    # ------------------------------------------------------------------------------------------------------------
    # Evaluation and the training loss
    # ------------------------------------------------------------------------------------------------------------
    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"):
        """The evaluation of the whole set at once: `eval_loss` and every metric come from sums and counts over all
        batches and ranks (duplicates that pad the last batch left out), so they do not depend on the batches.

        An evaluation before `train` must leave nothing that `train` mistakes for its own preparation:
        - under DeepSpeed, transformers would wrap the policy in a ZeRO inference engine and keep it as the trainer's
          engine: ZeRO-1/2 refuse that ("ZeRO inference only makes sense with ZeRO Stage 3"), and ZeRO-3 `train`
          reuses it, with no optimizer (`'NoneType' object has no attribute 'backward'`). It runs in
          `_inference_engine` instead, and the trainer's engine stays unbuilt;
        - otherwise, accelerate marks the policy prepared (for evaluation), and `train` then skips preparing it: under
          DDP the policy trains without gradient synchronisation, each rank on its own rows. The mark is undone.
        """
        self._eval_totals = None
        deepspeed_before_training = self.is_deepspeed_enabled and self.deepspeed is None
        plain_before_training = (
            not self.is_deepspeed_enabled
            and not self.is_fsdp_enabled
            and not getattr(self.model, "_is_accelerate_prepared", False)
        )
        if deepspeed_before_training:
            self._eval_engine = self._inference_engine()
            self.deepspeed = self._eval_engine  # skips transformers' `deepspeed_init(inference=True)`
        try:
            output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        finally:
            if deepspeed_before_training:
                self.deepspeed = self._eval_engine = None
            if plain_before_training:
                self._forget_evaluation_preparation()
        if self._eval_totals is not None:
            metrics = self._metrics_from_totals(dict(zip(self._stat_names, self._eval_totals.tolist(), strict=True)))
            output.metrics[f"{metric_key_prefix}_loss"] = metrics.pop("loss")
            self._metrics["eval"].update({name: [value] for name, value in metrics.items()})
        return output

    def _forget_evaluation_preparation(self) -> None:
        """Undo accelerate's `prepare_model(evaluation_mode=True)` of the policy, so that `train` prepares it (DDP)."""
        model = self.model
        if not getattr(model, "_is_accelerate_prepared", False):
            return
        del model._is_accelerate_prepared
        self.accelerator._models = [m for m in self.accelerator._models if m is not model]
        if "_original_forward" in vars(model):  # mixed precision wrapped `forward` in autocast: `train` does it again
            model.forward = vars(model).pop("_original_forward")
        self.model_wrapped = model

    def _wrap_model(self, model, training=True, dataloader=None):
        if not training and self._eval_engine is not None:
            return self._eval_engine
        return super()._wrap_model(model, training, dataloader)

    def training_step(self, *args, **kwargs) -> torch.Tensor:
        """The step's loss averaged over ranks (each rank's is its share of the global batch's loss, see
        `get_batch_samples`): the logged losses average the ranks, and so must the final `train_loss`, which adds up
        the steps after the last log from this rank's values alone."""
        loss = super().training_step(*args, **kwargs)
        return self.accelerator.reduce(loss, reduction="mean")

    # ------------------------------------------------------------------------------------------------------------
    # Loss
    # ------------------------------------------------------------------------------------------------------------
    # Floats of a batch that are not model inputs: transformers casts a batch's floats to DeepSpeed's bf16/fp16, which
    # would round summed reference log-probs by whole nats, step counts above 256 and scores near the threshold
    _EXACT_FLOATS = ("score", "ref_logps", "log_z", "group_counts", "step_counts")

    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        exact = {key: inputs[key].to(self.args.device) for key in self._EXACT_FLOATS if key in inputs}
        prepared = super()._prepare_inputs({key: value for key, value in inputs.items() if key not in exact})
        return prepared | exact

    @staticmethod
    def _model_kwargs(inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        skip = ("completion_mask", "score", "ref_logps", "log_z", "group_counts")
        kwargs = {k: v for k, v in inputs.items() if k not in skip}
        kwargs["use_cache"] = False
        return kwargs

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        inputs = dict(inputs)
        # Training batches carry their optimizer step's counts (`get_batch_samples`); evaluation normalises per batch
        counts = inputs.pop("group_counts", None)
        step_counts = inputs.pop("step_counts", None)
        counts = GroupCounts(*(self._group_counts([inputs]) if counts is None else counts).tolist())
        tokens = self._forward_tokens(model, inputs)
        token_logps, token_mask, outputs = tokens.log_probs, tokens.mask, tokens.outputs
        num_tokens = token_mask.sum(1).clamp(min=1)

        policy_sum = sequence_logps(token_logps, token_mask, length_normalize=False)
        if self.precompute_ref_logps:
            ref_sum = inputs["ref_logps"].to(policy_sum.dtype)
        else:
            reference = self.ref_model if self.ref_model is not None else self.model
            ref_sum = self._reference_logps(reference, inputs, mode).to(policy_sum.dtype)
        policy_logps, ref_logps = policy_sum, ref_sum
        if self.length_normalize:
            policy_logps, ref_logps = policy_sum / num_tokens, ref_sum / num_tokens

        scores = inputs["score"].to(policy_logps.dtype)
        log_z = inputs["log_z"].to(policy_logps.dtype) if "log_z" in inputs else self._log_z
        result = self.objective.loss(policy_logps, ref_logps, scores, token_logps, token_mask, counts, log_z)
        loss = result.loss
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather(outputs.aux_loss.detach()).mean().item())

        self._log_metrics(mode, inputs, tokens, policy_logps, ref_logps, scores, result, step_counts)
        if return_outputs:
            with torch.no_grad():
                outputs = model(**self._model_kwargs(inputs))
            return loss, outputs
        return loss

    # ------------------------------------------------------------------------------------------------------------
    # Metrics: per-example sums and counts, added up over ranks (and, in evaluation, over the whole set) before any
    # division, so every logged value covers all examples and a rank with no positives neither hangs nor logs NaN.
    # ------------------------------------------------------------------------------------------------------------
    _stat_names = (
        "n_pos", "n_neg", "reward_pos", "n_reward_pos", "reward_neg", "n_reward_neg", "logp_pos", "logp_neg",
        "correct", "n_finite", "term_pos", "term_neg", "entropy", "tokens", "top1_pos", "tokens_pos", "logits_pos",
        "logits_neg", "tokens_neg", "x", "y", "xy", "xx", "yy",
    )  # fmt: skip

    def _log_metrics(
        self, mode, inputs, tokens: TokenOutputs, policy_logps, ref_logps, scores, result: LossOutput, step_counts=None
    ):
        """Training: one entry per micro-batch (over ranks; ``step_counts``, the optimizer step's positives and
        negatives, become `count/*`). Evaluation: sums added up for `evaluation_loop`."""
        rows = self._row_stats(tokens, policy_logps, ref_logps, scores, result)
        if mode == "eval":  # added up over the whole evaluation, turned into metrics by `evaluation_loop`
            total = self.accelerator.gather_for_metrics(rows).sum(0)
            self._eval_totals = total if self._eval_totals is None else self._eval_totals + total
            return
        parts = torch.stack([result.sft_loss.detach(), result.preference_loss.detach()]).to(rows.dtype)
        total = self.accelerator.gather(torch.cat([rows.sum(0), parts])[None]).sum(0).tolist()
        totals = dict(zip(self._stat_names, total[:-2], strict=True))
        world = self.accelerator.num_processes
        metrics = self._metrics_from_totals(totals, loss_parts=(total[-2] / world, total[-1] / world))
        metrics.pop("loss")
        if step_counts is not None:  # per optimizer step, not per micro-batch (gradient accumulation)
            metrics["count/positive"], metrics["count/negative"] = step_counts.tolist()
        for name, value in metrics.items():
            self._metrics["train"][name].append(value)
        if self._total_train_tokens == 0:  # resumed from a checkpoint: count on from its last log
            logged = [entry["num_tokens"] for entry in self.state.log_history if "num_tokens" in entry]
            self._total_train_tokens = int(logged[-1]) if logged else 0
        tokens = int(self.accelerator.gather(inputs["attention_mask"].sum()).sum().item())
        self._total_train_tokens += tokens // self._tp_size  # tensor-parallel ranks share their tokens, as in TRL
        self._metrics["train"]["num_tokens"] = [self._total_train_tokens]

    def _row_stats(self, tokens: TokenOutputs, policy_logps, ref_logps, scores, result: LossOutput) -> torch.Tensor:
        """(B, len(_stat_names)): each example's share of every sum the metrics are made of."""
        positive = scores >= self.positive_threshold
        rewards = (self.beta * (policy_logps - ref_logps)).detach()
        logps = policy_logps.detach()
        finite = torch.isfinite(rewards)
        mask = tokens.mask.bool()
        pos_tokens = mask & positive[:, None]
        neg_tokens = mask & ~positive[:, None]
        entropy, mean_logits, is_top1 = tokens.entropy.detach(), tokens.mean_logits.detach(), tokens.is_top1

        def where(condition: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
            # Zero out unselected entries first: a NaN reward (no reference computed) must not leak into a sum
            return torch.where(condition, values, torch.zeros_like(values))

        # The implicit reward beta * h has the sign of the group; exactly 0 (every example before training) counts half
        correct = torch.where(rewards == 0, 0.5, ((rewards > 0) == positive).to(rewards.dtype))
        terms = result.terms.detach()
        stats = {
            "n_pos": positive,
            "n_neg": ~positive,
            "reward_pos": where(positive & finite, rewards),
            "n_reward_pos": positive & finite,
            "reward_neg": where(~positive & finite, rewards),
            "n_reward_neg": ~positive & finite,
            "logp_pos": where(positive, logps),
            "logp_neg": where(~positive, logps),
            "correct": where(finite, correct),
            "n_finite": finite,
            "term_pos": where(positive, terms),
            "term_neg": where(~positive, terms),
            "entropy": (entropy * mask).sum(1),
            "tokens": mask.sum(1),
            "top1_pos": (is_top1 & pos_tokens).sum(1),
            "tokens_pos": pos_tokens.sum(1),
            "logits_pos": where(pos_tokens, mean_logits).sum(1),
            "logits_neg": where(neg_tokens, mean_logits).sum(1),
            "tokens_neg": neg_tokens.sum(1),
            # Sufficient statistics of the Pearson correlation between implicit reward and score
            "x": where(finite, rewards),
            "y": where(finite, scores),
            "xy": where(finite, rewards * scores),
            "xx": where(finite, rewards * rewards),
            "yy": where(finite, scores * scores),
        }
        return torch.stack([stats[name].to(_float_dtype(scores.device)) for name in self._stat_names], dim=1)

    def _metrics_from_totals(self, t: dict[str, float], loss_parts: tuple[float, float] | None = None) -> dict:
        """Metrics (and ``loss``) from sums and counts. ``loss_parts``: the (positive, negative) parts of the loss
        when the trainer already has them (training); otherwise they are reduced from the summed terms."""
        if loss_parts is None:
            counts = GroupCounts(t["n_pos"], t["n_neg"], t["n_pos"] + t["n_neg"], t["tokens_pos"])
            parts = reduce_groups(
                torch.tensor(t["term_pos"]), torch.tensor(t["term_neg"]), counts, self.reduction,
                self.objective.token_level_positives,
            )  # fmt: skip
            loss_parts = tuple(float(part) for part in parts)
        metrics = {
            "loss": loss_parts[0] + loss_parts[1],
            "loss/sft": loss_parts[0],
            "loss/preference": loss_parts[1],
            "count/positive": t["n_pos"],
            "count/negative": t["n_neg"],
        }

        def ratio(name: str, numerator: float, denominator: float) -> None:
            if denominator > 0:
                metrics[name] = numerator / denominator

        ratio("entropy", t["entropy"], t["tokens"])
        ratio("mean_token_accuracy", t["top1_pos"], t["tokens_pos"])
        ratio("logits/chosen", t["logits_pos"], t["tokens_pos"])
        ratio("logits/rejected", t["logits_neg"], t["tokens_neg"])
        ratio("logps/chosen", t["logp_pos"], t["n_pos"])
        ratio("logps/rejected", t["logp_neg"], t["n_neg"])
        ratio("rewards/chosen", t["reward_pos"], t["n_reward_pos"])
        ratio("rewards/rejected", t["reward_neg"], t["n_reward_neg"])
        if t["n_reward_pos"] > 0 and t["n_reward_neg"] > 0:
            metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
        # Share of examples whose implicit reward beta * h has the sign of their group; 0 counts half
        ratio("rewards/accuracies", t["correct"], t["n_finite"])
        n = t["n_finite"]
        if self.score_type == "continuous" and n > 1:
            cov = t["xy"] - t["x"] * t["y"] / n
            var_x, var_y = t["xx"] - t["x"] ** 2 / n, t["yy"] - t["y"] ** 2 / n
            if var_x > 0 and var_y > 0:
                metrics["rewards/score_correlation"] = cov / (var_x * var_y) ** 0.5
        return metrics


def _float_dtype(device: torch.device) -> torch.dtype:
    """The dtype of sums and counts: float64, except on Apple's MPS, which has none."""
    return torch.float32 if device.type == "mps" else torch.float64


def _select_rows(inputs: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """The batch restricted to ``rows``, with the padding columns none of them uses trimmed off."""
    length = int(inputs["attention_mask"][rows].sum(1).max())
    return {key: value[rows][:, :length] if value.dim() == 2 else value[rows] for key, value in inputs.items()}
