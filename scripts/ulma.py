"""Train with `trl-ulma ulma`'s flags: `python scripts/ulma.py --model_name_or_path ... --dataset_name ...`.

Runs under `accelerate launch --config_file accelerate_configs/<config>.yaml scripts/ulma.py ...` unchanged.
"""

import sys

from trl_ulma.cli import main


if __name__ == "__main__":
    raise SystemExit(main(["ulma", *sys.argv[1:]]))
