"""Run by test_rel_faults.py in a fresh process: a fit or an artifact save that dies (SIGKILL) or waits on purpose.

Usage: python fault_script.py MODE MODEL RUN_NAME ARG
- ``kill-in-save``: fit RUN_NAME (2 epochs) and SIGKILL itself while the artifact's model folder is being written
  (its files are staged, not yet renamed into place);
- ``kill-in-artifact``: ``save_artifact(ARG)`` of the finished run RUN_NAME, SIGKILLed after copying two files;
- ``hold``: fit RUN_NAME with a checkpoint after every batch, and after batch 2 write ``ARG.ready`` and wait (at
  most 120 s) until the file ARG exists, then finish.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

from tests.conftest import make_texts

import finetuner
from finetuner.training import Callback, TrainingCheckpoint

SETTINGS = dict(epochs=2, batch_size=8, learning_rate=3e-3, seed=5, device="cpu", verbose=False)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Hold(Callback):
    def __init__(self, flag: Path) -> None:
        self.flag = flag

    def on_batch_end(self, state):
        if state.batches_trained != 2:
            return
        Path(f"{self.flag}.ready").write_text("ready")
        deadline = time.monotonic() + 120
        while not self.flag.exists() and time.monotonic() < deadline:
            time.sleep(0.2)


def main() -> None:
    mode, model, run_name, arg = sys.argv[1:]
    if mode == "kill-in-save":
        import finetuner.fileio as fileio

        real = fileio.fsync_tree

        def fsync_then_die(path):
            real(path)
            if Path(path).parent.name == "models":  # a model folder of the artifact, staged but not in place
                _die()

        fileio.fsync_tree = fsync_then_die
        finetuner.fit(model, make_texts(4), run_name=run_name, **SETTINGS)
    elif mode == "kill-in-artifact":
        real_copy = shutil.copyfile  # what copytree's copy2 calls for each file
        copied = []

        def copy_then_die(src, dst, **kwargs):
            if len(copied) == 2:
                _die()
            copied.append(src)
            return real_copy(src, dst, **kwargs)

        shutil.copyfile = copy_then_die
        finetuner.get_run(run_name).save_artifact(arg)
    elif mode == "hold":
        callbacks = [TrainingCheckpoint(save_every_n_steps=1), Hold(Path(arg))]
        finetuner.fit(model, make_texts(4), run_name=run_name, callbacks=callbacks, **SETTINGS)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
