"""What Finetuner 0.8 code needs to run here unchanged: its argument names translated to the local ones, its cloud
calls given their local meaning (or refused with the local equivalent in the message).

- :mod:`~finetuner.compat.fit_args`: ``fit``'s Finetuner arguments (``model_artifact``, ``description``,
  ``public``, a top-level ``scheduler_step``) and ``model_options`` names (``pooler``, ``pooler_options``);
- :mod:`~finetuner.compat.cloud`: ``login``, ``get_token`` and the Jina AI Cloud data names;
- :mod:`~finetuner.compat.experiments`: experiments and runs listed, fetched and deleted as Finetuner did.

``docs/migrating-from-finetuner.md`` has the whole table, one row per Finetuner API.
"""
