"""Run by tests/gpu/test_gpu_fsdp.py under ``accelerate launch --use_fsdp --fsdp_version 2`` (and by
tests/gpu/test_gpu_deepspeed.py under ``--use_deepspeed --zero_stage 3``): a fit, the same fit
crashing in its second epoch (after a sharded step checkpoint), and its resume. Argument: the model folder."""

from __future__ import annotations

import sys

from tests.conftest import make_texts

import finetuner
from finetuner.distributed import is_sharded
from finetuner.training import Callback, TrainingCheckpoint

SETTINGS = dict(epochs=2, batch_size=8, seed=0, verbose=False, num_items_per_class=2, precision="no")


class Sharded(Callback):
    def on_train_begin(self, state):
        assert is_sharded(state.model), "accelerate did not shard the model"


class Crash(Callback):
    def on_batch_end(self, state):
        if state.batches_trained == 5:
            raise RuntimeError("crash in epoch 2")


def main(model_dir: str) -> None:
    data = (make_texts(6, seed=1), make_texts(5, seed=2))
    finetuner.fit(model_dir, *data, run_name="whole", callbacks=[Sharded()], **SETTINGS)
    try:
        finetuner.fit(model_dir, *data, run_name="cut", callbacks=[TrainingCheckpoint(save_every_n_steps=2), Crash()],
                      **SETTINGS)  # fmt: skip
    except RuntimeError as exc:
        assert "crash in epoch 2" in str(exc)
    else:
        raise AssertionError("the run did not crash")
    finetuner.fit(model_dir, *data, resume_from="cut", callbacks=[TrainingCheckpoint(save_every_n_steps=2)], **SETTINGS)


if __name__ == "__main__":
    main(sys.argv[1])
