"""Query and document prompts: the text a model puts before a query (``'query: '``) or a document (``'passage: '``).

Models such as E5 and BGE were trained with such prefixes and retrieve worse without them. A text model holds its
prompts as ``model.prompts``, ``{'query': ..., 'document': ...}`` (either may be missing: no prefix for that role),
saves them in its ``metadata.yml`` and in sentence-transformers' ``config_sentence_transformers.json`` (so
``SentenceTransformer(path).encode(texts, prompt_name='query')`` prefixes the same way), and applies them where the
role of a text is known:

* ``finetuner.encode(model, texts, role='query' | 'document')``;
* evaluation: the queries get the query prompt, the index the document prompt;
* training: pairs and triplets put the query prompt before the query side and the document prompt before
  positives and negatives.

Labelled items and scored pairs have no query side: an item is both what is searched for and what is found, so
its text gets the **document** prompt, in training and in evaluation alike. Images never get a prompt.

Prompts come from ``model_options={'prompts': {...}}`` (given to ``fit`` or ``build_model``), else from the model:
a saved finetuner model, a sentence-transformers folder whose config has prompts, or an alias that carries its
model's (:data:`~finetuner.models.registry.MODELS`: ``e5-small-v2``, ``bge-small-en-v1.5``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from finetuner.errors import ConfigError

#: the roles a text can have
ROLES = ("query", "document")

#: sentence-transformers' prompt names read as the document prompt, in its own order of preference
_DOCUMENT_NAMES = ("document", "passage", "corpus")

#: the file sentence-transformers keeps its prompts in
ST_CONFIG_FILE = "config_sentence_transformers.json"


def prompt_problems(prompts: Any) -> list[str]:
    """What is wrong with a ``prompts`` setting (empty when it is valid).

    Example:
        >>> prompt_problems({'query': 'query: ', 'passage': 'passage: '})
        ["prompts has an unknown role 'passage'; the roles are 'query' and 'document' (for a passage: 'document')"]
    """
    if prompts is None:
        return []
    if not isinstance(prompts, Mapping):
        return [f"prompts must be a dict such as {{'query': 'query: ', 'document': 'passage: '}}; received {prompts!r}"]
    problems = []
    for role, prompt in prompts.items():
        if role not in ROLES:
            hint = " (for a passage: 'document')" if role in _DOCUMENT_NAMES else ""
            problems.append(f"prompts has an unknown role {role!r}; the roles are 'query' and 'document'{hint}")
        elif prompt is not None and not isinstance(prompt, str):
            problems.append(f"prompts[{role!r}] must be a string (or None); received {type(prompt).__name__}")
    return problems


def check_prompts(prompts: Any) -> dict[str, str]:
    """``prompts`` validated, without the roles that have no prompt (None or ``''``).

    Example:
        >>> check_prompts({'query': 'query: ', 'document': ''})
        {'query': 'query: '}
    """
    problems = prompt_problems(prompts)
    if problems:
        raise ConfigError("; ".join(problems))
    return {role: prompt for role, prompt in (prompts or {}).items() if prompt}


def check_role(role: Any) -> str | None:
    """``role`` validated: None (no prompt), ``'query'`` or ``'document'``.

    Example:
        >>> check_role('passage')
        Traceback (most recent call last):
        ...
        finetuner.errors.ConfigError: role must be 'query', 'document' or None; received 'passage'
    """
    if role is not None and role not in ROLES:
        raise ConfigError(f"role must be 'query', 'document' or None; received {role!r}")
    return role


def model_prompts(model: Any) -> dict[str, str]:
    """The prompts a model carries (empty for a model without any, or one that encodes no text).

    Example:
        >>> from types import SimpleNamespace
        >>> model_prompts(SimpleNamespace(prompts={'query': 'query: '})), model_prompts(object())
        ({'query': 'query: '}, {})
    """
    return dict(getattr(model, "prompts", None) or {})


def with_prompt(items: Sequence[Any], prompt: str | None) -> list[Any]:
    """``items`` with ``prompt`` put before every text (other items, images, as they are).

    Example:
        >>> with_prompt(['a cat', 'a dog'], 'query: ')
        ['query: a cat', 'query: a dog']
    """
    if not prompt:
        return list(items)
    return [prompt + item if isinstance(item, str) else item for item in items]


def for_role(items: Sequence[Any], prompts: Mapping[str, str], role: str | None) -> list[Any]:
    """``items`` prefixed with the prompt of ``role`` (as they are for ``role=None`` or a role without a prompt).

    Example:
        >>> for_role(['a cat'], {'query': 'query: '}, 'document'), for_role(['a cat'], {'query': 'query: '}, 'query')
        (['a cat'], ['query: a cat'])
    """
    return with_prompt(items, prompts.get(check_role(role) or "", None))


def set_prompts(model: Any, prompts: Any) -> Any:
    """Give ``model`` these prompts (validated); a model that encodes no text cannot take any. Returns the model.

    Example:
        >>> from types import SimpleNamespace
        >>> set_prompts(SimpleNamespace(modality='text'), {'query': 'query: '}).prompts
        {'query': 'query: '}
    """
    checked = check_prompts(prompts)
    if checked and getattr(model, "modality", None) != "text":
        what = getattr(model, "modality", None) or type(model).__name__
        raise ConfigError(f"prompts are put before texts; this model encodes {what} (drop model_options['prompts'])")
    if checked or hasattr(model, "prompts"):
        model.prompts = checked
    return model


def read_st_prompts(directory: str | Path) -> dict[str, str]:
    """The query and document prompts a sentence-transformers folder keeps in ``config_sentence_transformers.json``
    (its ``'passage'`` or ``'corpus'`` prompt as the document prompt when it has no ``'document'`` one).

    Example:
        >>> read_st_prompts('/nonexistent')
        {}
    """
    path = Path(directory) / ST_CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text(encoding="utf-8")).get("prompts") or {}
    except (ValueError, AttributeError):
        return {}
    out = {}
    if isinstance(saved.get("query"), str) and saved["query"]:
        out["query"] = saved["query"]
    document = next((saved[n] for n in _DOCUMENT_NAMES if isinstance(saved.get(n), str) and saved[n]), None)
    if document:
        out["document"] = document
    return out


def write_st_prompts(directory: str | Path, prompts: Mapping[str, str]) -> None:
    """Write ``config_sentence_transformers.json`` with ``prompts`` (sentence-transformers' ``encode_query`` and
    ``encode_document`` use the prompts named ``'query'`` and ``'document'``); nothing when there are none.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> write_st_prompts(folder, {'query': 'query: ', 'document': 'passage: '})
        >>> read_st_prompts(folder)
        {'query': 'query: ', 'document': 'passage: '}
    """
    if not prompts:
        return
    config = {"prompts": dict(prompts), "default_prompt_name": None, "similarity_fn_name": "cosine"}
    (Path(directory) / ST_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def resolve_prompts(model: Any, model_options: Mapping[str, Any] | None) -> dict[str, str]:
    """The prompts a model will carry, found before it is loaded: ``model_options['prompts']``, else those of a
    model instance, a saved finetuner model folder (an artifact: its model folder, see
    :func:`finetuner.artifacts.model_source`), a sentence-transformers folder, or an alias.

    A Hugging Face hub id carries none (its files are not read before the build): pass them in ``model_options``.

    Example:
        >>> resolve_prompts('e5-small-v2', None)
        {'query': 'query: ', 'document': 'passage: '}
        >>> resolve_prompts('e5-small-v2', {'prompts': {'query': 'q: '}})
        {'query': 'q: '}
    """
    if model_options and "prompts" in model_options:
        return check_prompts(model_options["prompts"])
    if hasattr(model, "prompts"):
        return model_prompts(model)
    if not isinstance(model, (str, Path)):
        return {}
    return _saved_prompts(Path(model).expanduser()) or _alias_prompts(str(model))


def _saved_prompts(folder: Path) -> dict[str, str]:
    """Prompts recorded in a saved finetuner model folder or a sentence-transformers folder."""
    if not folder.is_dir():
        return {}
    meta_file = folder / "metadata.yml"
    if meta_file.is_file():
        import yaml

        meta = yaml.safe_load(meta_file.read_text(encoding="utf-8")) or {}
        return check_prompts(meta.get("prompts") or {}) if isinstance(meta, dict) else {}
    return read_st_prompts(folder)


def _alias_prompts(name: str) -> dict[str, str]:
    from finetuner.models.registry import MODELS

    for key, spec in MODELS.items():
        if key.lower() == name.lower():
            return check_prompts(spec.options.get("prompts") or {})
    return {}


def prompt_data(data: Any, prompts: Mapping[str, str]) -> Any:
    """Task data (:mod:`finetuner.data.shapes`) with the prompts put before its texts, as training encodes them.

    Pairs: the query prompt before the left side, the document prompt before the right side (for CLIP pairs only
    the texts are prefixed); triplets: the query prompt before the queries, the document prompt before positives
    and negatives; labelled items and both sides of scored pairs: the document prompt. Pair groups are kept as
    the unprefixed items formed them, so a text used as a query in one pair and as a document in another still
    ties the two together.

    Example:
        >>> from finetuner.data.shapes import PairData
        >>> pairs = PairData(['a cat'], ['a cat sits'], 'text', 'text', ['0'])
        >>> p = prompt_data(pairs, {'query': 'q: ', 'document': 'd: '})
        >>> p.left, p.right
        (['q: a cat'], ['d: a cat sits'])
    """
    from finetuner.data.shapes import LabelledData, PairData, ScoredPairData, TripletData

    if not prompts:
        return data
    query, document = prompts.get("query"), prompts.get("document")
    if isinstance(data, LabelledData):
        return dataclasses.replace(data, items=with_prompt(data.items, document))
    if isinstance(data, PairData):
        return dataclasses.replace(
            data, left=with_prompt(data.left, query), right=with_prompt(data.right, document), groups=list(data.groups)
        )
    if isinstance(data, TripletData):
        return dataclasses.replace(
            data,
            queries=with_prompt(data.queries, query),
            positives=with_prompt(data.positives, document),
            negatives=[tuple(with_prompt(row, document)) for row in data.negatives],
        )
    if isinstance(data, ScoredPairData):
        return dataclasses.replace(data, left=with_prompt(data.left, document), right=with_prompt(data.right, document))
    raise TypeError(f"prompt_data takes task data (labelled items, pairs, triplets, scored pairs); got {type(data)}")


def prompt_option_problems(model: Any, prompts: Any) -> list[str]:
    """What is wrong with ``model_options['prompts']`` for ``model``, found before it is loaded: the format, and a
    model that encodes no text (an image or two-tower alias, a ``{'text': ..., 'vision': ...}`` pair, an image
    module).

    Example:
        >>> prompt_option_problems('resnet50', {'query': 'query: '})
        ["model_options['prompts'] are put before texts, but 'resnet50' is not a text model (it is vision)"]
    """
    problems = [f"model_options: {p}" for p in prompt_problems(prompts)]
    if problems or not check_prompts(prompts):
        return problems
    if isinstance(model, Mapping):
        return ["model_options['prompts'] are put before texts of a text model; a two-tower model takes none"]
    family = getattr(model, "modality", None)
    if isinstance(model, (str, Path)):
        from finetuner.models.registry import MODELS

        family = next((s.family for k, s in MODELS.items() if k.lower() == str(model).lower()), None)
    if family not in (None, "text"):
        name = _name(model)
        return [f"model_options['prompts'] are put before texts, but {name} is not a text model (it is {family})"]
    return []


def _name(model: Any) -> str:
    return repr(str(model)) if isinstance(model, (str, Path)) else type(model).__name__
