"""Text models: a Hugging Face transformer, token pooling and an optional projection head.

- :mod:`~finetuner.models.text.encoder`: :class:`TextEncoder` and its builder :func:`from_pretrained_text`;
- :mod:`~finetuner.models.text.tokens`: tokenise once before training, pad per batch, length-grouped batches;
- :mod:`~finetuner.models.text.st_folder`: the sentence-transformers layout a text model is saved in.
"""

from finetuner.models.text.encoder import TextEncoder, from_pretrained_text

__all__ = ["TextEncoder", "from_pretrained_text"]
