"""Train with `trl-ulma pointwise-dpo`'s flags: `python scripts/pointwise_dpo.py --model_name_or_path ... --dataset_name ...`.

Runs under `accelerate launch --config_file accelerate_configs/<config>.yaml scripts/pointwise_dpo.py ...` unchanged.
"""

import sys

from trl_ulma.cli import main


if __name__ == "__main__":
    raise SystemExit(main(["pointwise-dpo", *sys.argv[1:]]))
