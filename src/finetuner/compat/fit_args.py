"""Finetuner 0.8's arguments of ``fit``, ``build_model`` and ``get_model`` in their local meaning.

- ``fit(model_artifact=...)`` continues training from a saved artifact (a folder, a run name or ``Run.artifact_id``):
  the artifact's model is what trains, as in Finetuner, where ``model`` only configured the run;
- ``description=`` is kept in the run's ``metadata.yml`` (``Run.description``);
- ``public=`` has no local meaning (artifacts stay on this machine): True warns and is ignored;
- ``scheduler_step=`` given beside the other arguments (as one page of Finetuner's docs wrote it) goes into
  ``scheduler_options``, where Finetuner 0.7.2 moved it;
- ``model_options={'pooler': 'GeM', 'pooler_options': {'p': 2.4}}`` is ``{'pooling': 'gem', 'pooling_options':
  {'p': 2.4}}``;
- ``token=`` (``get_model``) is ignored with a note: there is no cloud to authenticate to.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from finetuner import artifacts
from finetuner.errors import ArtifactError, ConfigError, InputTypeError
from finetuner.fileio import read_yaml
from finetuner.runs import resolve_folder

logger = logging.getLogger("finetuner")

#: Finetuner's pooler names -> the ``pooling`` they are here
POOLERS = {"gem": "gem", "mean": "mean", "max": "max", "cls": "cls"}


def translate_fit_args(model: Any, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``fit``'s model and options with Finetuner's arguments in their local form (see the module docstring).

    Example:
        >>> translate_fit_args('bert-base-en', {'public': False, 'scheduler_step': 'epoch', 'scheduler': 'linear'})
        ('bert-base-en', {'scheduler': 'linear', 'scheduler_options': {'scheduler_step': 'epoch'}})
    """
    options = dict(options)
    artifact = options.pop("model_artifact", None)
    if artifact is not None:
        model = artifact_model(model, artifact)
    public = options.pop("public", False)
    if not isinstance(public, bool):
        raise InputTypeError(f"public must be True or False; received {public!r}")
    if public:
        warnings.warn(
            "public=True has no meaning here: finetuner runs and keeps artifacts on this machine (Finetuner shared "
            "them through Jina AI Cloud); share the folder run.save_artifact(...) returns instead. Ignored.",
            UserWarning,
            stacklevel=3,
        )
    description = options.get("description")
    if description is not None and not isinstance(description, str):
        raise InputTypeError(f"description must be a str; received {type(description).__name__}")
    if "scheduler_step" in options:
        step = options.pop("scheduler_step")
        scheduler_options = dict(options.get("scheduler_options") or {})
        if scheduler_options.get("scheduler_step", step) != step:
            raise ConfigError(
                f"scheduler_step={step!r} and scheduler_options={{'scheduler_step': "
                f"{scheduler_options['scheduler_step']!r}}} disagree; give it once, in scheduler_options"
            )
        options["scheduler_options"] = {**scheduler_options, "scheduler_step": step}
    if options.get("model_options") is not None:
        options["model_options"] = translate_model_options(options["model_options"])
    return model, options


def translate_model_options(model_options: Any) -> Any:
    """``model_options`` with Finetuner's ``pooler`` / ``pooler_options`` as ``pooling`` / ``pooling_options``.

    Example:
        >>> translate_model_options({'pooler': 'GeM', 'pooler_options': {'p': 2.4, 'eps': 1e-5}})
        {'pooling': 'gem', 'pooling_options': {'p': 2.4, 'eps': 1e-05}}
        >>> translate_model_options({'pooler': 'SoftMax'})
        Traceback (most recent call last):
        ...
        finetuner.errors.ConfigError: model_options pooler='SoftMax' is not a pooler; valid: GeM, mean, max, cls
    """
    if not isinstance(model_options, dict) or not {"pooler", "pooler_options"} & set(model_options):
        return model_options
    out = dict(model_options)
    if "pooler" in out:
        pooler = out.pop("pooler")
        pooling = POOLERS.get(str(pooler).lower()) if isinstance(pooler, str) else None
        if pooling is None:
            raise ConfigError(f"model_options pooler={pooler!r} is not a pooler; valid: GeM, mean, max, cls")
        if out.get("pooling", pooling) != pooling:
            raise ConfigError(
                f"model_options pooler={pooler!r} and pooling={out['pooling']!r} disagree; give one of them"
            )
        out["pooling"] = pooling
    if "pooler_options" in out:
        given = out.pop("pooler_options")
        if not isinstance(given, dict):
            raise InputTypeError(f"model_options pooler_options must be a dict; received {type(given).__name__}")
        if out.get("pooling_options", given) != given:
            raise ConfigError("model_options pooler_options and pooling_options disagree; give one of them")
        out["pooling_options"] = given
    return out


def artifact_model(model: Any, artifact: Any) -> str:
    """The folder ``fit`` trains from for ``model_artifact=artifact``: an artifact folder, a run folder or run name,
    or ``Run.artifact_id``. ``model`` (which Finetuner also required) is not what trains: a note says so when it
    names a different model than the one the artifact was tuned from.

    Raises:
        ArtifactError: nothing of that name, or not a finetuner artifact.

    Example:
        >>> artifact_model('bert-base-en', 'no-such-run')
        Traceback (most recent call last):
        ...
        finetuner.errors.ArtifactError: model_artifact='no-such-run': no run named 'no-such-run' under ...
    """
    if not isinstance(artifact, (str, os.PathLike)):
        raise InputTypeError(
            f"model_artifact must be an artifact folder, a run name or Run.artifact_id; received "
            f"{type(artifact).__name__}"
        )
    try:
        folder = resolve_folder(artifact)
    except ArtifactError as exc:
        raise ArtifactError(f"model_artifact={os.fspath(artifact)!r}: {exc}") from None
    if (Path(folder) / artifacts.MODEL_METADATA_FILE).is_file() and not artifacts.is_artifact(folder):
        return str(folder)  # one model folder of an artifact (a CLIP tower)
    if not artifacts.is_artifact(folder):
        raise ArtifactError(
            f"model_artifact={os.fspath(artifact)!r}: {folder} holds no tuned model (no "
            f"{artifacts.MODELS_DIR}/{artifacts.INPUT_MAP_FILE}); give a finished run, the folder "
            "run.save_artifact(...) returned, or run.artifact_id"
        )
    towers = list(artifacts.read_input_map(folder))
    if len(towers) > 1:
        raise ConfigError(
            f"model_artifact={os.fspath(artifact)!r} holds {len(towers)} models ({', '.join(towers)}): continuing a "
            "two-tower (CLIP) run from its artifact is not available; fit trains one of its models at a time, e.g. "
            f"model_artifact={str(Path(folder) / artifacts.MODELS_DIR / towers[0])!r} on data of its modality"
        )
    tuned_from = (read_yaml(Path(folder) / artifacts.CONFIG_FILE, {}) or {}).get("model")
    given = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
    if given and tuned_from and given not in (tuned_from, os.fspath(artifact)):
        logger.warning(
            "model=%r is not what trains: model_artifact continues the model of %s, which was tuned from %r",
            given,
            folder,
            tuned_from,
        )
    return str(folder)


def ignore_token(token: Any) -> None:
    """``token=`` of ``get_model``: there is no Jina AI Cloud to read artifacts from, so it is ignored (with a note
    when one is given).

    Example:
        >>> ignore_token(None)
    """
    if token is not None:
        logger.info("get_model(token=...) is ignored: finetuner loads artifacts from this machine and needs no token")
