"""`PointwiseDPOTrainer`: DPO's implicit reward fitted to point-wise labels or scores, as a `trl.DPOTrainer`.

The trainer reads top to bottom: data preparation, the targets fitted once (`fitting`), the layout, and per batch
the step's counts, the forward (`forward`), the reference (`reference`), the objective (`objectives`, the math in
`losses`) and the metrics (`metrics`). The batch's columns are in `collator`; what works around accelerate,
DeepSpeed and transformers internals in `workarounds`.
"""

import torch
from accelerate.logging import get_logger
from datasets import Dataset, IterableDataset
from transformers import PreTrainedTokenizerBase, ProcessorMixin
from trl import DPOConfig, DPOTrainer
from trl.data_utils import is_conversational
from trl.trainer.utils import get_config_model_id, global_then_local_main_first

from .collator import ROW_COLUMNS, DataCollatorForPointwisePreference, model_kwargs
from .data import column_names, infer_score_type, to_pointwise
from .fitting import add_row_log_z, fit_targets
from .forward import TokenOutputs, forward_tokens
from .layout import PromptGroupSampler
from .layout_support import effective_layout, is_varlen_attention
from .losses import GroupCounts, LossOutput, batch_counts, sequence_logps
from .metrics import float_dtype, metrics_from_totals, row_stats
from .objectives import PointwiseDPO
from .pointwise_dpo_config import PointwiseDPOConfig, pointwise_options
from .preparation import PromptFitsFilter, add_eos, report_lengths, report_prompt_cuts, text_tokenizer, tokenize_row
from .reference import ReferenceLogps, reference_model
from .workarounds import FrameworkWorkarounds


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


class PointwiseDPOTrainer(ReferenceLogps, FrameworkWorkarounds, DPOTrainer):
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
    _layout: str | None = None  # the effective layout (`_fix_layout`)
    _eval_totals: dict[str, torch.Tensor] | None = None  # the evaluation's summed `metrics.row_stats`

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
        if train_dataset is None:
            raise ValueError("`train_dataset` is required")
        columns = column_names(train_dataset)
        if "image" in columns or "images" in columns:
            raise NotImplementedError(f"{type(self).__name__} does not support vision datasets yet.")

        # The loss options, also from a plain DPOConfig (a DPOTrainer script with the class swapped)
        self.options = pointwise_options(args, self._config_class, infer_score_type(columns), type(self).__name__)
        if self.options.score_baseline == "prompt" and isinstance(train_dataset, IterableDataset):
            raise ValueError(
                "`score_baseline='prompt'` groups the rows by prompt, which a stream cannot: use a map-style Dataset, "
                "or score_baseline='mean' (estimated on the stream's first rows) or a number."
            )

        # The point-wise collator is built before `DPOTrainer.__init__`, which would otherwise build the paired one
        # and which already uses the collator when it precomputes reference log-probs.
        processing_class = text_tokenizer(model, processing_class, args, type(self).__name__)
        ref_model, copied_reference = reference_model(model, ref_model, args, peft_config, type(self).__name__)
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
        if copied_reference and args.precompute_ref_log_probs and self.is_fsdp_enabled:
            self.ref_model = None  # the precompute is done: freed, as DPOTrainer frees a reference it built for it
        self._fit_targets()
        self._fix_layout()
        self._say_when_fsdp_is_dropped()

    # ------------------------------------------------------------------------------------------------------------
    # Data
    # ------------------------------------------------------------------------------------------------------------
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if "prompt_ids" in column_names(dataset):  # already prepared (`evaluate` calls this again)
            return dataset
        map_kwargs = {"num_proc": args.dataset_num_proc} if isinstance(dataset, Dataset) else {}
        with global_then_local_main_first():
            dataset = to_pointwise(dataset, self.options.score_type, map_kwargs)
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
        if self.options.score_baseline == "prompt" and hasattr(self, "targets"):  # an eval set given to `evaluate`
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
        """Once, on the prepared training set: the targets (`self.targets`, `trl_ulma.fitting`), the per-row
        baselines of ``score_baseline="prompt"`` and the objective (`self.objective`)."""
        self.targets = fit_targets(self._training_scores(), self.options, self._objective_class, type(self).__name__)
        if self._objective_class.fits_reward and self.options.score_baseline == "prompt":
            self.train_dataset = self._add_row_log_z(self.train_dataset)
            if isinstance(self.eval_dataset, dict):
                self.eval_dataset = {name: self._add_row_log_z(d) for name, d in self.eval_dataset.items()}
            elif self.eval_dataset is not None:
                self.eval_dataset = self._add_row_log_z(self.eval_dataset)
        self.objective = self._objective_class.build(self.options, self.targets)

    def _add_row_log_z(self, dataset):
        return add_row_log_z(dataset, self.options, self.targets)

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = list(ROW_COLUMNS)

    # ------------------------------------------------------------------------------------------------------------
    # Layout (`trl_ulma.layout`): how a batch's rows go through the model
    # ------------------------------------------------------------------------------------------------------------
    @property
    def _layout_mode(self) -> str:
        return self._fix_layout()

    def _fix_layout(self) -> str:
        """The effective layout, decided once, when the models are set up (before the reference precompute, which runs
        inside `DPOTrainer.__init__`, or at the end of `__init__`): ``layout`` if the policy and the reference model
        can take it, else "padding_free" if they can (FlashAttention, for ``shared_prompt``), else "padded" (with a
        warning). The trainer's own collator then lays out every batch on the CPU, except where accelerate splits one
        collated global batch between the ranks by rows (an `IterableDataset` on several processes, or
        ``dispatch_batches`` / ``split_batches``): there each rank's forward lays out its share."""
        if self._layout is not None:
            return self._layout
        # A DeepSpeed engine's own `config` is DeepSpeed's: look at the models inside
        models = [self.accelerator.unwrap_model(m) for m in (self.model, self.ref_model) if m is not None]
        self._layout, reason = effective_layout(models, self.args.max_length, self.options.layout)
        if reason is not None:
            to = "padded batches" if self._layout == "padded" else self._layout
            logger.warning(f"layout={self.options.layout!r} falls back to {to}: {reason}.", main_process_only=True)
        config = self.accelerator.dataloader_config
        split_by_rows = config.split_batches or config.dispatch_batches or (
            self.accelerator.num_processes > 1 and isinstance(self.train_dataset, IterableDataset)
        )
        if isinstance(self.data_collator, DataCollatorForPointwisePreference) and not split_by_rows:
            self.data_collator.layout = self._layout
            implementations = [getattr(m.config, "_attn_implementation", None) for m in models]
            # FlashAttention's one sequence, where every model runs it (a mask over it would be (N, N) for the others)
            self.data_collator.varlen = all(map(is_varlen_attention, implementations))
            if self._objective_class.reference_scope(self.options, "train") == "negatives":
                self.data_collator.negatives_below = self.options.positive_threshold
        return self._layout

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
        pad_token_id = getattr(self.data_collator, "pad_token_id", 0)
        unwrapped = self.accelerator.unwrap_model(model)
        return forward_tokens(model, inputs, self._layout_mode, unwrapped, pad_token_id, self.aux_loss_enabled)

    # ------------------------------------------------------------------------------------------------------------
    # The optimizer step's counts
    # ------------------------------------------------------------------------------------------------------------
    def _group_counts(self, batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """`GroupCounts` of ``batches`` summed over them and over ranks, divided by their number times the number of
        ranks, as a tensor (see `GroupCounts`): each batch's loss then carries its share of the means over them all."""
        threshold = self.options.positive_threshold
        counts = [batch_counts(b["score"], threshold, b["completion_mask"][:, 1:]) for b in batches]
        device = batches[0]["score"].device
        local = torch.tensor([sum(column) for column in zip(*counts)], dtype=float_dtype(device), device=device)
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
    # Evaluation
    # ------------------------------------------------------------------------------------------------------------
    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """The evaluation of the whole set at once: `eval_loss` and every metric come from sums and counts over all
        batches and ranks (duplicates that pad the last batch left out), so they do not depend on the batches."""
        self._eval_totals = None
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if self._eval_totals is not None:
            metrics = self._metrics_from_totals({name: float(total) for name, total in self._eval_totals.items()})
            output.metrics[f"{metric_key_prefix}_loss"] = metrics.pop("loss")
            self._metrics["eval"].update({name: [value] for name, value in metrics.items()})
        return output

    # ------------------------------------------------------------------------------------------------------------
    # Loss
    # ------------------------------------------------------------------------------------------------------------
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
        if self.options.length_normalize:
            policy_logps, ref_logps = policy_sum / num_tokens, ref_sum / num_tokens

        scores = inputs["score"].to(policy_logps.dtype)
        log_z = inputs["log_z"].to(policy_logps.dtype) if "log_z" in inputs else self.targets.log_z
        result = self.objective.loss(policy_logps, ref_logps, scores, token_logps, token_mask, counts, log_z)
        loss = result.loss
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather(outputs.aux_loss.detach()).mean().item())

        self._log_metrics(mode, inputs, tokens, policy_logps, ref_logps, scores, result, step_counts)
        if return_outputs:
            with torch.no_grad():
                outputs = model(**model_kwargs(inputs))
            return loss, outputs
        return loss

    # ------------------------------------------------------------------------------------------------------------
    # Metrics (`trl_ulma.metrics`)
    # ------------------------------------------------------------------------------------------------------------
    def _log_metrics(
        self, mode, inputs, tokens: TokenOutputs, policy_logps, ref_logps, scores, result: LossOutput, step_counts=None
    ):
        """Training: one entry per micro-batch (over ranks; ``step_counts``, the optimizer step's positives and
        negatives, become `count/*`). Evaluation: sums added up for `evaluation_loop`."""
        stats = row_stats(tokens, policy_logps, ref_logps, scores, result, self.beta, self.options.positive_threshold)
        rows = torch.stack(list(stats.values()), dim=1)
        if mode == "eval":  # added up over the whole evaluation, turned into metrics by `evaluation_loop`
            total = self.accelerator.gather_for_metrics(rows).sum(0)
            if self._eval_totals is not None:
                total = total + torch.stack(list(self._eval_totals.values()))
            self._eval_totals = dict(zip(stats, total, strict=True))
            return
        parts = torch.stack([result.sft_loss.detach(), result.preference_loss.detach()]).to(rows.dtype)
        total = self.accelerator.gather(torch.cat([rows.sum(0), parts])[None]).sum(0).tolist()
        totals = dict(zip(stats, total[:-2], strict=True))
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

    def _metrics_from_totals(self, totals: dict[str, float], loss_parts: tuple[float, float] | None = None) -> dict:
        return metrics_from_totals(
            totals,
            score_type=self.options.score_type,
            reduction=self.options.reduction,
            token_level_positives=self.objective.token_level_positives,
            loss_parts=loss_parts,
        )
