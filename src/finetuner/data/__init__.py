"""Documents, readers, preprocessing, datasets and samplers."""

from finetuner.data.documents import LABEL_TAG, SCORE_TAG, Document, DocumentArray
from finetuner.data.readers import CSVOptions, load_data

__all__ = ["LABEL_TAG", "SCORE_TAG", "CSVOptions", "Document", "DocumentArray", "load_data"]
