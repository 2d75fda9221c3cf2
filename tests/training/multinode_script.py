"""Run under ``torchrun`` by test_multinode.py: one process of a 2-node x 2-process fit on tiny synthetic texts.

Usage: torchrun --nnodes 2 --nproc_per_node 2 ... multinode_script.py MODEL_DIR RUN_NAME
"""

from __future__ import annotations

import os
import sys

import torch
from tests.conftest import make_texts
from tests.training.test_multinode import SETTINGS

import finetuner


def main() -> None:
    model_dir, run_name = sys.argv[1:]
    torch.set_num_threads(1)
    if os.environ.get("WORLD_SIZE") != "4":
        raise SystemExit(f"expected 4 processes, got WORLD_SIZE={os.environ.get('WORLD_SIZE')}")
    finetuner.fit(model_dir, make_texts(6, seed=1), make_texts(5, seed=2), run_name=run_name, **SETTINGS)


if __name__ == "__main__":
    main()
