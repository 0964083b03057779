"""The shipped DeepSpeed configs train ULMATrainer (single CPU process) with the same losses as plain training."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


def run(*extra: str) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = os.environ | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1",
                        "LOCAL_RANK": "0", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests/scripts/train_tiny.py"), *extra], env=env, capture_output=True, text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@pytest.mark.slow
@pytest.mark.parametrize("config", ["zero2.json", "zero3.json"])
@pytest.mark.parametrize("precompute", [False, True])
def test_deepspeed_matches_plain_training(config, precompute):
    flags = ["--precompute"] if precompute else []
    plain = run(*flags)
    sharded = run("--deepspeed", str(ROOT / "deepspeed_configs" / config), *flags)
    assert sharded["engine"] == "DeepSpeedEngine"
    assert sharded["losses"] == pytest.approx(plain["losses"], rel=1e-4)
