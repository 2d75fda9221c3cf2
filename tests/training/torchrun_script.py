"""Run under ``torchrun`` by test_torchrun.py: one process of a multi-process (or multi-node) fit.

Usage: torchrun ... torchrun_script.py RECORDS FIT-ARGUMENTS...
Runs the ``finetuner fit`` command with FIT-ARGUMENTS, with one callback added that writes
``RECORDS/rank-<rank>.yml``: the rank's seed, its batches of the first epoch and a digest of its final weights.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import yaml

import finetuner
from finetuner.training import Callback


class Record(Callback):
    def __init__(self, folder: Path) -> None:
        self.folder, self.labels = folder, []

    def on_batch_end(self, state):
        if state.epoch == 0:
            self.labels.append(state.batch_in_epoch)

    def on_train_end(self, state):
        model = state.accelerator.unwrap_model(state.model)
        digest = hashlib.sha256()
        for key, value in sorted(model.state_dict().items()):
            digest.update(key.encode() + value.detach().cpu().float().numpy().round(5).tobytes())
        record = {"seed": state.config.seed, "batches": len(self.labels), "weights": digest.hexdigest()}
        (self.folder / f"rank-{os.environ['RANK']}.yml").write_text(yaml.safe_dump(record))


def main() -> None:
    records, *argv = sys.argv[1:]
    fit = finetuner.fit

    def fit_and_record(*args, **kwargs):
        return fit(*args, callbacks=[*(kwargs.pop("callbacks", None) or []), Record(Path(records))], **kwargs)

    finetuner.fit = fit_and_record
    from finetuner.cli import main as cli

    sys.exit(cli(["fit", *argv]))


if __name__ == "__main__":
    main()
