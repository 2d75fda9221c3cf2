"""Training data synthesis on this machine (``finetuner.synthesize``): queries generated for a corpus by a Hugging
Face model, written as (query, document) pairs that ``fit`` reads.

- :mod:`~finetuner.synthesis.generation`: :class:`QueryGenerator` (seq2seq doc2query models and causal LMs);
- :mod:`~finetuner.synthesis.run`: :func:`synthesize`, the resumable run that writes ``synthesized.csv``.
"""

from finetuner.synthesis.run import SynthesisModels, synthesis_model_en, synthesis_model_multi, synthesize

__all__ = ["SynthesisModels", "synthesis_model_en", "synthesis_model_multi", "synthesize"]
