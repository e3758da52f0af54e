"""The two-tower retrieval stage: a learned first stage that narrows a large catalogue to a few hundred
candidates per customer before the ranker (issue 17).

Modules, one per step: ``data`` (point-in-time arrays from the dbt marts and the raw holdings), ``model``
(the two towers and the sampled-softmax loss), ``train`` (the seeded fit, the saved model), ``index``
(brute-force top-K search and recall), ``evaluate`` (recall against popularity), ``embeddings`` (the
embedding marts), ``stage`` (train / evaluate on a build), ``cli`` (``nextbest retrieval train`` /
``recall``). Needs the optional extra ``retrieval`` (JAX, Flax, optax): ``model``, ``train`` and
``stage`` import JAX, so the CLI imports them only inside its commands.
"""
