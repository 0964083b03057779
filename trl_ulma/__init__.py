"""trl-ulma: point-wise DPO and ULMA (arXiv 2312.02554) as drop-in TRL trainers."""

from .collator import DataCollatorForPointwisePreference
from .losses import LossOutput, pointwise_dpo_loss, sequence_logps, ulma_loss, unlikelihood_loss
from .pointwise_dpo_config import PointwiseDPOConfig
from .pointwise_dpo_trainer import PointwiseDPOTrainer
from .reward_loop import RewardLoopConfig, run_reward_loop
from .ulma_config import ULMAConfig
from .ulma_trainer import ULMATrainer
from .unlikelihood_config import UnlikelihoodConfig
from .unlikelihood_trainer import UnlikelihoodTrainer


__version__ = "0.1.0"

__all__ = [
    "DataCollatorForPointwisePreference",
    "LossOutput",
    "PointwiseDPOConfig",
    "PointwiseDPOTrainer",
    "RewardLoopConfig",
    "ULMAConfig",
    "ULMATrainer",
    "UnlikelihoodConfig",
    "UnlikelihoodTrainer",
    "pointwise_dpo_loss",
    "run_reward_loop",
    "sequence_logps",
    "ulma_loss",
    "unlikelihood_loss",
]
