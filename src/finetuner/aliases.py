"""Names people bring from Finetuner 0.8 and neighbouring libraries, and what to write here instead.

Error messages for an unknown name consult these tables before they look for a similar valid name
(:func:`finetuner.errors.suggest`), so a known name gets advice that fits ('lr' -> ``learning_rate``) and an unknown
one is never matched to a different word that merely shares a prefix. Keys are lower case.

Example:
    >>> FIT_OPTIONS['lr']
    'use learning_rate=...'
"""

from __future__ import annotations

_SCHEDULE = "scheduler='linear' (or another) with scheduler_options="

#: ``fit`` keyword arguments of other libraries (or of older Finetuners) -> what to write here
FIT_OPTIONS: dict[str, str] = {
    "lr": "use learning_rate=...",
    "num_epochs": "use epochs=...",
    "n_epochs": "use epochs=...",
    "max_epochs": "use epochs=...",
    "train_batch_size": "use batch_size=...",
    "per_device_train_batch_size": "use batch_size=... (the global batch)",
    "warmup_steps": f"use {_SCHEDULE}{{'num_warmup_steps': N}}",
    "num_warmup_steps": f"use {_SCHEDULE}{{'num_warmup_steps': N}}",
    "warmup_ratio": f"use {_SCHEDULE}{{'warmup_ratio': 0.1}}",
    "num_training_steps": f"use {_SCHEDULE}{{'num_training_steps': N}}",
    "weight_decay": "use optimizer_options={'weight_decay': ...}",
    "layer_wise_lr_decay": "use optimizer_options={'layer_wise_lr_decay': 0.98}",
    "pooler": "use model_options={'pooler': 'GeM'} (or model_options={'pooling': 'mean' | 'cls' | 'max' | 'gem'})",
    "pooling": "use model_options={'pooling': 'mean' | 'cls' | 'max' | 'gem'}",
    "pooler_options": "use model_options={'pooler': 'GeM', 'pooler_options': {'p': 3}}",
    "max_seq_length": "use model_options={'max_length': N}",
    "max_length": "use model_options={'max_length': N}",
    "cpu": "use device='cpu' (Finetuner 0.6's cpu=True)",
    "gpus": "launch the script with `accelerate launch` or `torchrun` for several GPUs (docs/distributed.md)",
    "num_gpus": "launch the script with `accelerate launch` or `torchrun` for several GPUs (docs/distributed.md)",
    "token": "drop it: finetuner runs on this machine and needs no Jina AI token",
    "fp16": "use precision='fp16'",
    "bf16": "use precision='bf16'",
    "mixed_precision": "use precision='bf16' or 'fp16'",
    "eval_split": "use val_split=...",
    "validation_split": "use val_split=...",
    "valid_split": "use val_split=...",
    "resume": "use resume_from=<run name or checkpoint folder>",
    "resume_from_checkpoint": "use resume_from=<run name or checkpoint folder>",
    "output_dir": "runs are saved under $FINETUNER_HOME/runs; copy one with run.save_artifact(directory)",
    "output_path": "runs are saved under $FINETUNER_HOME/runs; copy one with run.save_artifact(directory)",
    "multi_modal": "drop it: the data says whether it holds text-image pairs",
    "metrics": "retrieval metrics are measured on eval_data (or by an EvaluationCallback); read them with "
    "run.metrics()",
    "distance": "set it on the evaluation: EvaluationCallback(..., distance='cosine')",
    "shuffle": "batches are shuffled each epoch; choose how with sampler='auto' | 'class' | 'random'",
}

#: loss names of Finetuner's docs and other libraries that are not losses here -> what to use
LOSSES: dict[str, str] = {
    "ntxloss": "did you mean 'NTXentLoss'?",
    "multiplenegativesrankingloss": "use loss='InfoNCELoss' on pairs: the same in-batch-negatives objective",
    "mnrl": "use loss='InfoNCELoss' on pairs: the same in-batch-negatives objective",
    "marginmseloss": "MarginMSELoss (Finetuner's loss for cross-encoder scored synthesis data) is not available; "
    "train (query, document) pairs, such as finetuner.synthesize writes, with loss='InfoNCELoss'",
}

#: model names Finetuner knew that have no equivalent here -> why, and what to use
MODELS: dict[str, str] = {
    "pointnet-base": "3D mesh / point-cloud models (Finetuner's PointNet++ 'pointnet-base') are not supported: "
    "finetuner tunes text, image and CLIP models, and 'mlp' for feature vectors",
    "crossencoder-base-en": "cross-encoders score pairs (Finetuner used them inside synthesis jobs); finetuner tunes "
    "embedding models: pick one from finetuner.list_models()",
    "crossencoder-base-ml": "cross-encoders score pairs (Finetuner used them inside synthesis jobs); finetuner tunes "
    "embedding models: pick one from finetuner.list_models()",
}
