"""LoRA adapters on a model's backbone(s), through the ``peft`` library (``pip install 'finetuner[peft]'``).

``fit(..., adapter='lora', adapter_options={...})`` wraps each backbone (a two-tower model: both) in a
``peft.PeftModel``: the backbone's weights freeze, low-rank matrices beside the chosen layers train, and a projection
head (``output_dim``) trains in full. Options (all optional):

- ``r`` (16): the rank; ``alpha`` (``2 * r``): the scale ``alpha / r`` of the update; ``dropout`` (0.05);
- ``target_modules``: which layers get an adapter, as ``peft`` reads them: a list of layer names (a name matches
  every layer whose dotted path ends with it, e.g. ``['query', 'value']``), one regular expression over the whole
  dotted path, or ``'all-linear'``. Default: the attention projections when the backbone has a known naming
  (:data:`ATTENTION_NAMES`: BERT-like ``query``/``key``/``value``, CLIP/ViT-like ``q_proj``/``k_proj``/``v_proj``,
  DistilBERT, MPNet/T5, DeBERTa, timm ViT ``qkv``), else every linear layer, else every convolution;
- ``bias`` (``'none'``, ``'all'``, ``'lora_only'``), ``use_rslora``, ``use_dora``: peft's options of these names;
- ``merge`` (False): save the merged weights at the end of ``fit`` (a full model folder) instead of the adapter.

Target names are checked against the backbone's layers once it is built, before training: a name that matches no
layer is refused with the names that would.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from finetuner.errors import ConfigError, closest

#: ``adapter_options`` keys and what each must be
OPTION_RULES: dict[str, str] = {
    "r": "an int >= 1",
    "alpha": "a number > 0",
    "dropout": "a number in [0, 1)",
    "target_modules": "a list of layer names, one regular expression, or 'all-linear'",
    "bias": "'none', 'all' or 'lora_only'",
    "use_rslora": "True or False",
    "use_dora": "True or False",
    "merge": "True or False",
}
#: peft's own names (and a common one) for the options above, named in the error
_SYNONYMS = {"rank": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "modules": "target_modules"}
DEFAULT_RANK = 16
DEFAULT_DROPOUT = 0.05
#: attention projections by naming convention, tried in this order; the first whose names all occur is the default
ATTENTION_NAMES: tuple[tuple[str, ...], ...] = (
    ("query", "key", "value"),  # BERT, RoBERTa, XLM-R, ELECTRA, MiniLM; HF ViT, DeiT, BEiT
    ("q_proj", "k_proj", "v_proj"),  # CLIP, SigLIP, BART, LLaMA-like
    ("q_lin", "k_lin", "v_lin"),  # DistilBERT
    ("query_proj", "key_proj", "value_proj"),  # DeBERTa-v2/v3
    ("q", "k", "v"),  # MPNet, T5
    ("qkv",),  # timm ViT, open_clip's timm towers
)
#: layer types peft can put a LoRA adapter on
_ADAPTABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def option_problems(options: dict[str, Any]) -> list[str]:
    """Every problem of ``adapter_options`` for LoRA that shows without a model (one message each).

    Example:
        >>> option_problems({'r': 0, 'rank': 8})
        ["adapter_options has unknown key 'rank' (did you mean 'r'?); valid keys: r, alpha, dropout, ..., merge", \
"adapter_options['r'] must be an int >= 1; received 0"]
        >>> option_problems({'r': 8, 'target_modules': ['query', 'value']})
        []
    """
    out: list[str] = []
    for key in options:
        if key not in OPTION_RULES:
            hint = _SYNONYMS.get(str(key)) or closest(str(key), OPTION_RULES)
            out.append(
                f"adapter_options has unknown key {key!r}{f' (did you mean {hint!r}?)' if hint else ''}; valid keys: "
                + ", ".join(OPTION_RULES)
            )
    checks = {
        "r": lambda v: _is_int(v) and v >= 1,
        "alpha": lambda v: _is_num(v) and v > 0,
        "dropout": lambda v: _is_num(v) and 0 <= v < 1,
        "target_modules": lambda v: (
            (isinstance(v, str) and v.strip() != "")
            or (isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(s, str) and s for s in v))
        ),
        "bias": lambda v: v in ("none", "all", "lora_only"),
        "use_rslora": lambda v: isinstance(v, bool),
        "use_dora": lambda v: isinstance(v, bool),
        "merge": lambda v: isinstance(v, bool),
    }
    for key, ok in checks.items():
        if key in options and not ok(options[key]):
            out.append(f"adapter_options[{key!r}] must be {OPTION_RULES[key]}; received {options[key]!r}")
    target = options.get("target_modules")
    if isinstance(target, str) and target != "all-linear":
        try:
            re.compile(target)
        except re.error as exc:
            out.append(f"adapter_options['target_modules'] {target!r} is not a valid regular expression ({exc})")
    return out


def adaptable_layers(backbone: nn.Module) -> dict[str, str]:
    """``{dotted path: type name}`` of the layers of ``backbone`` that can take a LoRA adapter.

    Example:
        >>> adaptable_layers(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Conv2d(3, 3, 1)))
        {'0': 'Linear', '2': 'Conv2d'}
    """
    out = {}
    for name, module in backbone.named_modules():
        if name and (isinstance(module, _ADAPTABLE) or type(module).__name__ == "Conv1D"):  # Conv1D: GPT-2 style
            out[name] = type(module).__name__
    return out


def default_targets(backbone: nn.Module) -> list[str]:
    """The layers a LoRA adapter goes on by default: the attention projections (first naming of
    :data:`ATTENTION_NAMES` whose names all occur), else every linear layer, else every convolution.

    Example:
        >>> from transformers import BertConfig, BertModel
        >>> default_targets(BertModel(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        ...                                      intermediate_size=16, vocab_size=10)))
        ['query', 'key', 'value']
    """
    layers = adaptable_layers(backbone)
    leaves = {path.rsplit(".", 1)[-1] for path in layers}
    for names in ATTENTION_NAMES:
        if set(names) <= leaves:
            return list(names)
    for kinds in (("Linear", "Conv1D"), ("Conv1d", "Conv2d", "Conv3d")):
        found = sorted({path.rsplit(".", 1)[-1] for path, kind in layers.items() if kind in kinds})
        if found:
            return found
    raise ConfigError(f"the backbone ({type(backbone).__name__}) has no linear or convolution layer for a LoRA adapter")


def check_targets(backbone: nn.Module, target: str | list[str], where: str = "the backbone") -> None:
    """Refuse target names (or a regular expression) that match no adaptable layer of ``backbone``, listing the
    names that would (the same matching as peft: a name matches a dotted path equal to it or ending in ``.name``;
    a string is a regular expression over the whole path).

    Example:
        >>> net = nn.Sequential()
        >>> net.add_module('query', nn.Linear(2, 2)); net.add_module('value', nn.Linear(2, 2))
        >>> check_targets(net, ['qurey'])
        Traceback (most recent call last):
        ...
        finetuner.errors.ConfigError: adapter_options['target_modules']: 'qurey' (did you mean 'query'?) matches \
no layer of the backbone; layer names there: query, value
    """
    if target == "all-linear":
        return
    layers = adaptable_layers(backbone)
    leaves = sorted({path.rsplit(".", 1)[-1] for path in layers})
    shown = ", ".join(leaves[:40]) + (f", ... ({len(leaves)} names)" if len(leaves) > 40 else "")
    if isinstance(target, str):
        if not any(re.fullmatch(target, path) for path in layers):
            examples = ", ".join(list(layers)[:6])
            raise ConfigError(
                f"adapter_options['target_modules']: the regular expression {target!r} matches no layer path of "
                f"{where} (it must match a whole dotted path, e.g. {examples}); layer names there: {shown}"
            )
        return
    missing = [t for t in target if not any(p == t or p.endswith("." + t) for p in layers)]
    if missing:
        named = ", ".join(
            f"{m!r}" + (f" (did you mean {closest(m, leaves)!r}?)" if closest(m, leaves) else "") for m in missing
        )
        raise ConfigError(
            f"adapter_options['target_modules']: {named} matches no layer of {where}; layer names there: {shown}"
        )


def lora_config(backbone: nn.Module, options: dict[str, Any], where: str = "the backbone") -> Any:
    """The ``peft.LoraConfig`` for ``backbone`` from ``adapter_options`` (targets defaulted and checked).

    Example:
        >>> lora_config(nn.Sequential(nn.Linear(2, 2)), {'r': 4}).r  # doctest: +SKIP
        4
    """
    from peft import LoraConfig

    rank = int(options.get("r", DEFAULT_RANK))
    target = options.get("target_modules") or default_targets(backbone)
    target = target if isinstance(target, str) else list(target)
    check_targets(backbone, target, where)
    return LoraConfig(
        r=rank,
        lora_alpha=float(options.get("alpha", 2 * rank)),
        lora_dropout=float(options.get("dropout", DEFAULT_DROPOUT)),
        target_modules=target,
        bias=options.get("bias", "none"),
        use_rslora=bool(options.get("use_rslora", False)),
        use_dora=bool(options.get("use_dora", False)),
    )
