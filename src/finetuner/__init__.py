"""finetuner: fine-tune embedding models for neural search, locally.

Example:
    >>> import finetuner
    >>> from finetuner import Document, DocumentArray
    >>> train = DocumentArray([Document(content='pencil skirt', tags={'finetuner_label': 'skirt'})])
    >>> len(train)
    1
"""

from finetuner import model
from finetuner.api import build_model, describe_models, encode, evaluate, fit, get_model, list_losses, list_models
from finetuner.callback import list_callbacks
from finetuner.compat.cloud import cos_sim, get_token, list_model_options, login
from finetuner.data import CSVOptions, Document, DocumentArray
from finetuner.errors import ArtifactError, ConfigError, DataError, FinetunerError, InputTypeError
from finetuner.experiments import (
    Experiment,
    create_experiment,
    delete_experiment,
    delete_experiments,
    delete_run,
    delete_runs,
    get_experiment,
    list_experiments,
)
from finetuner.mining import mine_hard_negatives
from finetuner.runs import Run, get_run, list_runs
from finetuner.synthesis import SynthesisModels, synthesize

#: Finetuner's other names of ``fit`` and ``synthesize``
create_training_run = create_run = fit
create_synthesis_run = synthesize

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "CSVOptions",
    "ConfigError",
    "DataError",
    "Document",
    "DocumentArray",
    "Experiment",
    "FinetunerError",
    "InputTypeError",
    "Run",
    "SynthesisModels",
    "__version__",
    "build_model",
    "cos_sim",
    "create_experiment",
    "create_run",
    "create_synthesis_run",
    "create_training_run",
    "delete_experiment",
    "delete_experiments",
    "delete_run",
    "delete_runs",
    "describe_models",
    "encode",
    "evaluate",
    "fit",
    "get_experiment",
    "get_model",
    "get_run",
    "get_token",
    "list_callbacks",
    "list_experiments",
    "list_losses",
    "list_model_options",
    "list_models",
    "list_runs",
    "login",
    "mine_hard_negatives",
    "model",
    "synthesize",
]
