"""Run by the kill -9 resume test in a fresh process: fit the tiny BERT with checkpoints, optionally dying.

Usage: python fit_script.py MODE MODEL RUN_NAME KILL_STEP OUT
MODE is ``kill`` (SIGKILL itself right after step KILL_STEP), ``resume`` (resume_from=RUN_NAME) or ``full``.
The tuned weights (read back from the run folder) are written to OUT as safetensors.
"""

from __future__ import annotations

import os
import signal
import sys

from safetensors.torch import save_file
from tests.conftest import make_texts

import finetuner
from finetuner.training import Callback, TrainingCheckpoint


class KillAt(Callback):
    """SIGKILL this process after step ``step``: no cleanup, no finally blocks, like a crash or the OOM killer."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, state):
        if state.batches_trained == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    mode, model, run_name, kill_step, out = sys.argv[1:]
    callbacks = [TrainingCheckpoint(save_every_n_steps=3)]
    if mode == "kill":
        callbacks.append(KillAt(int(kill_step)))
    options = dict(
        epochs=3,
        batch_size=8,
        learning_rate=3e-3,
        scheduler="linear",
        seed=7,
        verbose=False,
        run_name=run_name,
        callbacks=callbacks,
    )
    if mode == "resume":
        options["resume_from"] = run_name
        options.pop("run_name")
    run = finetuner.fit(model, make_texts(10, seed=1), make_texts(3, seed=2), **options)
    tuned = finetuner.get_model(run.directory)
    save_file({k: v.contiguous() for k, v in tuned.state_dict().items()}, out)
    print("history", run.directory, flush=True)


if __name__ == "__main__":
    main()
