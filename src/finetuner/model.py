"""Finetuner's ``finetuner.model`` module: the synthesis models (``from finetuner.model import SynthesisModels``).

Finetuner's presets ``synthesis_model_en`` and ``synthesis_model_multi`` named models of its cloud and no
generator; :func:`finetuner.synthesize` says what to give instead when it gets them.

Example:
    >>> from finetuner.model import SynthesisModels
    >>> SynthesisModels(generator='doc2query/msmarco-t5-small-v1').relation_miner is None
    True
"""

from finetuner.synthesis import SynthesisModels, synthesis_model_en, synthesis_model_multi

__all__ = ["SynthesisModels", "synthesis_model_en", "synthesis_model_multi"]
