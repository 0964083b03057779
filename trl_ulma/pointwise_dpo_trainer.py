"""`PointwiseDPOTrainer`: DPO's implicit reward fitted to point-wise labels or scores, as a `trl.DPOTrainer`.

The math lives in `trl_ulma.losses`; this module is the plumbing: data preparation, batching, the policy and
reference forwards (TRL's fused LM head, no full-vocabulary logits), reference precompute and metrics.
"""

import contextlib
import hashlib
import os
from dataclasses import dataclass, fields
from typing import Any

import torch
from accelerate.logging import get_logger
from accelerate.utils import broadcast_object_list, gather_object, is_peft_model, tqdm
from datasets import Dataset, IterableDataset
from datasets.fingerprint import Hasher
from torch.utils.data import DataLoader
from transformers import AutoProcessor, PreTrainedTokenizerBase, ProcessorMixin
from transformers.data.data_collator import DataCollatorMixin
from trl import DPOConfig, DPOTrainer
from trl.data_utils import _tokenize, common_prefix_length, is_conversational
from trl.models import prepare_deepspeed
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import get_config_model_id, global_then_local_main_first, pad, use_adapter

from .data import column_names, infer_score_type, to_pointwise
from .losses import GroupCounts, LossOutput, batch_counts, pointwise_dpo_loss, sequence_logps
from .pointwise_dpo_config import PointwiseDPOConfig


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

    Each example has ``prompt_ids``, ``completion_ids``, ``score`` and optionally ``ref_logps``. Returns
    ``input_ids``, ``attention_mask``, ``completion_mask`` (1 on completion tokens), all right-padded, ``score`` as a
    float tensor and ``ref_logps`` when present. Sequences are truncated to ``max_length`` before padding, keeping
    the start (``keep_start``) or the end (``keep_end``).
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
            sequence = example["prompt_ids"] + example["completion_ids"]
            mask = [0] * len(example["prompt_ids"]) + [1] * len(example["completion_ids"])
            if self.max_length is not None and len(sequence) > self.max_length:
                keep = slice(None, self.max_length) if self.truncation_mode == "keep_start" else slice(-self.max_length, None)
                sequence, mask = sequence[keep], mask[keep]
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
        if "ref_logps" in examples[0]:
            output["ref_logps"] = torch.tensor([example["ref_logps"] for example in examples], dtype=torch.float32)
        return output


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

        # The point-wise collator is built before `DPOTrainer.__init__`, which would otherwise build the paired one
        # and which already uses the collator when it precomputes reference log-probs.
        if processing_class is None:
            model_id = model if isinstance(model, str) else get_config_model_id(model.config)
            processing_class = AutoProcessor.from_pretrained(model_id, trust_remote_code=args.trust_remote_code)
        if not isinstance(processing_class, PreTrainedTokenizerBase):
            raise NotImplementedError(f"{type(self).__name__} supports text tokenizers only, not processors.")
        if processing_class.pad_token is None:
            processing_class.pad_token = processing_class.eos_token
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
                dataset = dataset.map(_add_eos, fn_kwargs={"eos_token": self._tokenizer.eos_token}, **map_kwargs)
            dataset = dataset.map(_tokenize_row, fn_kwargs={"processing_class": processing_class}, **map_kwargs)
            if isinstance(dataset, Dataset):
                self._report_lengths(dataset, args.max_length, args.truncation_mode, dataset_name)
                if dataset_name == "train":
                    self._check_groups(dataset)
            if args.max_length is not None and args.truncation_mode == "keep_start":
                # As in TRL: a prompt filling `max_length` would leave no completion token to learn from
                dataset = dataset.filter(lambda row: len(row["prompt_ids"]) < args.max_length, **map_kwargs)
        return dataset

    def _report_lengths(self, dataset: Dataset, max_length: int | None, truncation_mode: str, name: str) -> None:
        if max_length is None:
            return
        prompt_lengths = [len(ids) for ids in dataset["prompt_ids"]]
        lengths = [p + len(c) for p, c in zip(prompt_lengths, dataset["completion_ids"], strict=True)]
        dropped = sum(p >= max_length for p in prompt_lengths) if truncation_mode == "keep_start" else 0
        cut = sum(length > max_length for length in lengths) - dropped
        if dropped or cut:
            logger.warning(
                f"{name} dataset: of {len(lengths)} rows, {dropped} are dropped because their prompt alone has "
                f">= max_length={max_length} tokens, and {cut} are truncated ({truncation_mode}). Raise `max_length` "
                "or shorten the prompts to keep them whole.",
                main_process_only=True,
            )

    def _check_groups(self, dataset: Dataset) -> None:
        positives = sum(score >= self.positive_threshold for score in dataset["score"])
        if positives in (0, len(dataset)):
            missing = "positive" if positives == 0 else "negative"
            logger.warning(
                f"The training set has no {missing} examples (score {'>=' if missing == 'positive' else '<'} "
                f"positive_threshold={self.positive_threshold}): {type(self).__name__} {self._degenerate_note(missing)}",
                main_process_only=True,
            )

    def _degenerate_note(self, missing: str) -> str:
        return "only fits the implicit reward of one class, which pushes all completions one way."

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["prompt_ids", "completion_ids", "score", "ref_logps"]

    # ------------------------------------------------------------------------------------------------------------
    # Reference log-probs
    # ------------------------------------------------------------------------------------------------------------
    def compute_ref_log_probs(self, model, inputs) -> torch.Tensor:
        """Summed reference log-prob of each completion in a padded batch, shape (B,)."""
        completion_mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
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
            outputs = model(**self._model_kwargs(inputs), labels=labels, fused_lm_head=True)
        shift_mask = completion_mask[:, 1:]
        return sequence_logps(outputs.log_probs[:, -shift_mask.size(1) :], shift_mask, length_normalize=False)

    def _precompute_ref_logps(self, dataset: Dataset, name: str, batch_size: int) -> Dataset:
        """Add a ``ref_logps`` column (summed reference log-probs), cached on disk by dataset and model.

        Rank 0 alone reads and writes the cache; the values reach the other ranks by collectives, never by file: an
        in-memory dataset's cache directory is a per-process temporary directory, and nodes need not share a disk.
        """
        if isinstance(dataset, IterableDataset):
            raise ValueError("`precompute_ref_log_probs=True` needs a map-style Dataset, not an IterableDataset.")
        if "ref_logps" in dataset.column_names:
            return dataset
        mode = "train" if name == "train" else "eval"
        # The collator's truncation decides which tokens are scored and the scope which rows: both key the cache
        key = (
            dataset._fingerprint,
            self._precompute_model_hash if self._zero_stage() != 3 else self._zero3_model_hash(),
            self.args.max_length,
            self.args.truncation_mode,
            self._reference_scope(mode),
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
            # Before `train`, DeepSpeed parameters are not placed (ZeRO-1/2) or sharded (ZeRO-3): run them in an
            # inference engine, built once and reused for later splits
            if self._precompute_engine is None:
                self._precompute_engine = prepare_deepspeed(self.model, self.accelerator)
            model = self._precompute_engine
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

    def _zero3_model_hash(self) -> str:
        """The reference model's hash under ZeRO-3, where TRL's (of `state_dict()`) sees only empty placeholders, the
        same for any weights: each rank hashes its own shards, and the ranks' digests are combined."""
        digest = hashlib.sha256()
        reference = self.ref_model if self.ref_model is not None else self.model
        for name, param in sorted(reference.named_parameters()):
            digest.update(name.encode())
            digest.update(getattr(param, "ds_tensor", param).detach().float().cpu().numpy().tobytes())
        return Hasher.hash(gather_object([digest.hexdigest()]))

    def _reference_scope(self, mode: str) -> str:
        """Rows whose reference log-prob the loss reads in training: ``"all"``, ``"negatives"`` or ``"none"``.

        Evaluation always scores every row (a forward without backward is cheap) so its reward metrics are complete.
        """
        return "all"

    def _reference_logps(self, model, inputs, mode: str) -> torch.Tensor:
        """Summed reference log-probs (B,), computed only on the rows the loss reads; NaN elsewhere."""
        scope = self._reference_scope(mode)
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
        local = torch.tensor([sum(column) for column in zip(*counts)], dtype=torch.float64, device=device)
        return self.accelerator.gather(local[None]).sum(0) / (self.accelerator.num_processes * len(batches))

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """Also give each micro-batch the group counts of its whole optimizer step, all the micro-batches of the
        gradient-accumulation window on every rank: its losses then add up to the loss of one big batch."""
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        if batch_samples:
            counts = self._group_counts(batch_samples)
            for batch in batch_samples:
                batch["group_counts"] = counts
        return batch_samples, num_items_in_batch

    # ------------------------------------------------------------------------------------------------------------
    # Loss
    # ------------------------------------------------------------------------------------------------------------
    @staticmethod
    def _model_kwargs(inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        skip = ("completion_mask", "score", "ref_logps", "group_counts")
        kwargs = {k: v for k, v in inputs.items() if k not in skip}
        kwargs["use_cache"] = False
        return kwargs

    def _loss(self, policy_logps, ref_logps, scores, token_logps, token_mask, counts: GroupCounts) -> LossOutput:
        """The point-wise objective on one batch; `ULMATrainer` overrides this alone."""
        return pointwise_dpo_loss(
            policy_logps,
            ref_logps,
            scores,
            beta=self.beta,
            score_type=self.score_type,
            log_z=self.log_z,
            reduction=self.reduction,
            positive_threshold=self.positive_threshold,
            counts=counts,
        )

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        inputs = dict(inputs)
        # Training batches carry their optimizer step's counts (`get_batch_samples`); evaluation normalises per batch
        counts = inputs.pop("group_counts", None)
        counts = GroupCounts(*(self._group_counts([inputs]) if counts is None else counts).tolist())
        completion_mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        model_kwargs = self._model_kwargs(inputs)
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        token_mask = completion_mask[:, 1:]
        # Prompt-learning PEFT prepends virtual tokens to the outputs: keep the positions of the real tokens
        token_logps = outputs.log_probs[:, -token_mask.size(1) :]
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
        result = self._loss(policy_logps, ref_logps, scores, token_logps, token_mask, counts)
        loss = result.loss
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather(outputs.aux_loss.detach()).mean().item())

        self._log_metrics(mode, inputs, outputs, token_mask, policy_logps, ref_logps, scores, result)
        if return_outputs:
            with torch.no_grad():
                outputs = model(**model_kwargs)
            return loss, outputs
        return loss

    # ------------------------------------------------------------------------------------------------------------
    # Metrics: sums and counts per rank, gathered once, so every logged value covers all ranks' examples and a
    # rank with no positives (or negatives) neither hangs nor logs NaN.
    # ------------------------------------------------------------------------------------------------------------
    def _log_metrics(self, mode, inputs, outputs, token_mask, policy_logps, ref_logps, scores, result: LossOutput):
        positive = scores >= self.positive_threshold
        rewards = (self.beta * (policy_logps - ref_logps)).detach()
        logps = policy_logps.detach()
        u = rewards + self.log_z
        mask = token_mask.bool()
        pos_tokens = mask & positive[:, None]
        neg_tokens = mask & ~positive[:, None]
        seq_len = token_mask.size(1)
        entropy = outputs.entropy[:, -seq_len:].detach()
        mean_logits = outputs.mean_logits[:, -seq_len:].detach()
        is_top1 = outputs.is_top1[:, -seq_len:]

        def masked_sum(values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
            # Zero out unselected rows first: a NaN reward (no reference computed) must not leak into a sum
            return torch.where(where, values, torch.zeros_like(values)).sum()

        finite = torch.isfinite(rewards)
        stats = {
            "n_pos": positive.sum(),
            "n_neg": (~positive).sum(),
            "reward_pos": masked_sum(rewards, positive & finite),
            "n_reward_pos": (positive & finite).sum(),
            "reward_neg": masked_sum(rewards, ~positive & finite),
            "n_reward_neg": (~positive & finite).sum(),
            "logp_pos": masked_sum(logps, positive),
            "logp_neg": masked_sum(logps, ~positive),
            "correct": masked_sum(((u > 0) == positive).float(), finite),
            "n_finite": finite.sum(),
            "sft": result.sft_loss.detach(),
            "preference": result.preference_loss.detach(),
            "entropy": (entropy * mask).sum(),
            "tokens": mask.sum(),
            "top1_pos": (is_top1 & pos_tokens).sum(),
            "tokens_pos": pos_tokens.sum(),
            "logits_pos": masked_sum(mean_logits, pos_tokens),
            "logits_neg": masked_sum(mean_logits, neg_tokens),
            "tokens_neg": neg_tokens.sum(),
            "seqs": torch.ones_like(scores).sum(),
            # Sufficient statistics of the Pearson correlation between implicit reward and score
            "x": masked_sum(rewards, finite),
            "y": masked_sum(scores, finite),
            "xy": masked_sum(rewards * scores, finite),
            "xx": masked_sum(rewards * rewards, finite),
            "yy": masked_sum(scores * scores, finite),
        }
        vector = torch.stack([v.to(torch.float64) for v in stats.values()])
        total = dict(zip(stats, self.accelerator.gather(vector[None]).sum(0).tolist(), strict=True))
        world = self.accelerator.num_processes

        metrics = self._metrics[mode]
        metrics["loss/sft"].append(total["sft"] / world)
        metrics["loss/preference"].append(total["preference"] / world)
        metrics["count/positive"].append(total["n_pos"])
        metrics["count/negative"].append(total["n_neg"])
        if total["tokens"] > 0:
            metrics["entropy"].append(total["entropy"] / total["tokens"])
        if mode == "train":
            self._total_train_tokens += int(self.accelerator.gather(inputs["attention_mask"].sum()).sum().item())
        metrics["num_tokens"] = [self._total_train_tokens]
        if total["tokens_pos"] > 0:
            metrics["mean_token_accuracy"].append(total["top1_pos"] / total["tokens_pos"])
            metrics["logits/chosen"].append(total["logits_pos"] / total["tokens_pos"])
        if total["tokens_neg"] > 0:
            metrics["logits/rejected"].append(total["logits_neg"] / total["tokens_neg"])
        if total["n_pos"] > 0:
            metrics["logps/chosen"].append(total["logp_pos"] / total["n_pos"])
        if total["n_neg"] > 0:
            metrics["logps/rejected"].append(total["logp_neg"] / total["n_neg"])
        if total["n_reward_pos"] > 0:
            metrics["rewards/chosen"].append(total["reward_pos"] / total["n_reward_pos"])
        if total["n_reward_neg"] > 0:
            metrics["rewards/rejected"].append(total["reward_neg"] / total["n_reward_neg"])
        if total["n_reward_pos"] > 0 and total["n_reward_neg"] > 0:
            margin = total["reward_pos"] / total["n_reward_pos"] - total["reward_neg"] / total["n_reward_neg"]
            metrics["rewards/margins"].append(margin)
        if total["n_finite"] > 0:
            # Share of examples whose implicit reward u has the sign of their group (u > 0 for positives)
            metrics["rewards/accuracies"].append(total["correct"] / total["n_finite"])
        if self.score_type == "continuous" and total["n_finite"] > 1:
            n = total["n_finite"]
            cov = total["xy"] - total["x"] * total["y"] / n
            var_x, var_y = total["xx"] - total["x"] ** 2 / n, total["yy"] - total["y"] ** 2 / n
            if var_x > 0 and var_y > 0:
                metrics["rewards/score_correlation"].append(cov / (var_x * var_y) ** 0.5)


def _add_eos(example: dict[str, Any], eos_token: str) -> dict[str, Any]:
    if not example["completion"].endswith(eos_token):
        example["completion"] = example["completion"] + eos_token
    return example


def _tokenize_row(example: dict[str, Any], processing_class) -> dict[str, list[int]]:
    """Token ids of the prompt and of the completion, split where prompt and prompt+completion diverge (as TRL)."""
    if is_conversational(example):
        prompt_ids = _tokenize(processing_class, example["prompt"], add_generation_prompt=True)["input_ids"]
        full_ids = _tokenize(processing_class, example["prompt"] + example["completion"])["input_ids"]
    else:
        prompt_ids = _tokenize(processing_class, example["prompt"])["input_ids"]
        full_ids = _tokenize(processing_class, example["prompt"] + example["completion"])["input_ids"]
    prompt_length = common_prefix_length(prompt_ids, full_ids)
    return {"prompt_ids": prompt_ids[:prompt_length], "completion_ids": full_ids[prompt_length:]}


def _select_rows(inputs: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """The batch restricted to ``rows``, with the padding columns none of them uses trimmed off."""
    length = int(inputs["attention_mask"][rows].sum(1).max())
    return {key: value[rows][:, :length] if value.dim() == 2 else value[rows] for key, value in inputs.items()}
