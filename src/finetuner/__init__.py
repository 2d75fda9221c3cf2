"""finetuner: fine-tune embedding models for neural search, locally.

Example:
    >>> import finetuner
    >>> from finetuner import Document, DocumentArray
    >>> train = DocumentArray([Document(content='pencil skirt', tags={'finetuner_label': 'skirt'})])
    >>> len(train)
    1
"""

from finetuner.api import build_model, describe_models, encode, evaluate, fit, get_model, list_losses, list_models
from finetuner.callback import list_callbacks
from finetuner.data import CSVOptions, Document, DocumentArray
from finetuner.errors import ArtifactError, ConfigError, DataError, FinetunerError, InputTypeError
from finetuner.runs import Run, get_run, list_runs

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "CSVOptions",
    "ConfigError",
    "DataError",
    "Document",
    "DocumentArray",
    "FinetunerError",
    "InputTypeError",
    "Run",
    "__version__",
    "build_model",
    "describe_models",
    "encode",
    "evaluate",
    "fit",
    "get_model",
    "get_run",
    "list_callbacks",
    "list_losses",
    "list_models",
    "list_runs",
]
