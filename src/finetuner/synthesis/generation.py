"""Query generation with a Hugging Face model: doc2query-style seq2seq models (T5, BART: document in, query out)
or causal language models (GPT-2, Llama, ...: a prompt that ends where the query begins).

Generation is sampled and seeded per batch, so a batch gives the same queries whether the run went through in one go
or was resumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from finetuner.errors import ConfigError

#: the prompt of a causal language model; ``{examples}`` holds example queries (``query_data``), ``{document}`` the text
CAUSAL_PROMPT = "{examples}Write a search query that this document answers.\nDocument: {document}\nQuery:"
#: the class-name endings of models that generate text (a config's ``architectures``)
GENERATION_HEADS = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration", "ForSeq2SeqLM")
#: sampling as docTTTTTquery generates: top-k sampling
DEFAULT_GENERATION = {"do_sample": True, "top_k": 10}


@dataclass
class QueryGenerator:
    """A generation model and how it turns documents into queries.

    Args:
        source: a Hugging Face hub id or local folder of a seq2seq or causal language model.
        device: ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or ``'mps'``.
        max_new_tokens: the longest query, in tokens.
        max_input_length: documents are truncated to this many tokens.
        prompt: for a causal model, the prompt template (``{document}``, optionally ``{examples}``); for a seq2seq
            model, a prefix put before each document (doc2query models need none).
        examples: example queries shown in a causal model's prompt (Finetuner's ``query_data``).
        generation_options: keyword arguments of ``model.generate`` (default: top-k sampling with k=10).

    Example:
        >>> generator = QueryGenerator('doc2query/msmarco-t5-small-v1', 'cpu')  # doctest: +SKIP
        >>> generator.generate(['Paris is the capital of France.'], 2, seed=0)  # doctest: +SKIP
        [['what is the capital of france', 'capital of france']]
    """

    source: str
    device: str = "cpu"
    max_new_tokens: int = 32
    max_input_length: int = 512
    prompt: str | None = None
    examples: Sequence[str] = ()
    generation_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        config = AutoConfig.from_pretrained(self.source)
        saved_as = list(getattr(config, "architectures", None) or [])
        if saved_as and not any(a.endswith(GENERATION_HEADS) for a in saved_as):
            raise ConfigError(
                f"{self.source} is not a text generation model (saved as {', '.join(saved_as)}); give a seq2seq "
                "doc2query model (T5, BART) or a causal language model (GPT-2, Llama, ...)"
            )
        self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        loader = AutoModelForSeq2SeqLM if self.seq2seq else AutoModelForCausalLM
        try:
            self.model = loader.from_pretrained(self.source).to(self.device).eval()
        except ValueError as exc:  # a config that is no generation model (a BERT, a CLIP ...)
            raise ConfigError(
                f"{self.source} is not a text generation model ({exc}); give a seq2seq doc2query model or a causal "
                "language model"
            ) from exc
        self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        if not self.seq2seq:
            self.tokenizer.padding_side = "left"  # the generated tokens follow every prompt directly
            if self.tokenizer.pad_token is None:
                if self.tokenizer.eos_token is None:
                    raise ConfigError(f"{self.source}: its tokenizer has neither a padding nor an end token")
                self.tokenizer.pad_token = self.tokenizer.eos_token
        template = self.prompt if self.prompt is not None else ("" if self.seq2seq else CAUSAL_PROMPT)
        if not self.seq2seq and "{document}" not in template:
            raise ConfigError(
                f"the prompt of a causal language model needs a {{document}} field; received {template!r}"
            )
        self.template = template

    def inputs(self, documents: Sequence[str]) -> list[str]:
        """What the model reads for each document: the prompt filled in (causal) or prefix + document (seq2seq).

        Example:
            >>> g = QueryGenerator.__new__(QueryGenerator)
            >>> g.seq2seq, g.template, g.examples = True, 'generate query: ', ()
            >>> g.inputs(['a text'])
            ['generate query: a text']
        """
        if self.seq2seq:
            return [f"{self.template}{doc}" for doc in documents]
        shown = "".join(f"Example query: {q}\n" for q in self.examples)
        return [self.template.format(examples=shown, document=doc) for doc in documents]

    def generate(self, documents: Sequence[str], num_queries: int, seed: int) -> list[list[str]]:
        """``num_queries`` queries for each document (empty strings kept: the caller drops them), seeded."""
        texts = self.inputs(documents)
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_input_length, return_tensors="pt"
        )
        batch = {k: encoded[k].to(self.device) for k in ("input_ids", "attention_mask")}  # no token_type_ids
        options = {**DEFAULT_GENERATION, **self.generation_options}
        if not options.get("do_sample") and num_queries > 1:
            options.setdefault("num_beams", num_queries)
        torch.manual_seed(seed)
        pad = self.tokenizer.pad_token_id
        with torch.inference_mode():
            out = self.model.generate(
                **batch,
                max_new_tokens=self.max_new_tokens,
                num_return_sequences=num_queries,
                pad_token_id=pad,
                **options,
            )  # (batch * num_queries, length)
        if not self.seq2seq:
            out = out[:, batch["input_ids"].shape[1] :]  # only the continuation
        decoded = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        queries = [_first_line(text) for text in decoded]
        return [queries[i * num_queries : (i + 1) * num_queries] for i in range(len(documents))]


def _first_line(text: str) -> str:
    """A generated query: its first line, stripped.

    Example:
        >>> _first_line('  cheap flights\\nDocument: ...')
        'cheap flights'
    """
    return text.strip().split("\n", 1)[0].strip()
