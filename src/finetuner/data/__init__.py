"""Documents, readers (one table of rows with named roles per source), task shapes, preprocessing, datasets and
samplers."""

from finetuner.data.documents import LABEL_TAG, SCORE_TAG, Document, DocumentArray
from finetuner.data.readers import CSVOptions, load_data, read_table
from finetuner.data.shaping import read_shape, to_shape
from finetuner.data.table import ROLE_TAG, Table

__all__ = [
    "LABEL_TAG",
    "ROLE_TAG",
    "SCORE_TAG",
    "CSVOptions",
    "Document",
    "DocumentArray",
    "Table",
    "load_data",
    "read_shape",
    "read_table",
    "to_shape",
]
