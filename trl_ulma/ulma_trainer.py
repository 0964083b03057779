"""`ULMATrainer`: ULMA's one-step alignment (SFT on positives, point-wise DPO on negatives) as a `trl.DPOTrainer`."""

from .objectives import ULMA
from .pointwise_dpo_trainer import PointwiseDPOTrainer
from .ulma_config import ULMAConfig


class ULMATrainer(PointwiseDPOTrainer):
    """ULMA (arXiv 2312.02554): one step, one dataset, demonstrations and point-wise preferences together.

    Positives (score >= `positive_threshold`) get plain SFT, the negative log-likelihood with no KL regulariser;
    negatives get the KL-regularised point-wise DPO term (`trl_ulma.objectives.ULMA`). Everything else, data format
    included, is as in `PointwiseDPOTrainer`; the loss options are in `ULMAConfig`.

    Example:
    ```python
    >>> from trl_ulma import ULMAConfig, ULMATrainer
    >>> trainer = ULMATrainer(model="Qwen/Qwen2.5-0.5B-Instruct", args=ULMAConfig("out"), train_dataset=dataset)
    >>> trainer.train()
    ```
    """

    _tag_names = ["trl", "trl-ulma", "ulma"]
    _name = "ULMA"
    _config_class = ULMAConfig
    _objective_class = ULMA
