"""Training: ranking groups -> LightGBM lambdarank -> calibration -> a versioned model bundle.

``datasets`` and ``train`` read the feature store (Feast, through ``nextbest.features``, as plain rows);
``ranker``, ``baselines``, ``calibration``, ``metrics``, ``evaluate`` and ``scoring`` are pure and in
memory: frames in, frames / models out. ``scoring.score_bundle`` is the one scoring function of a model
bundle, used by evaluation here, by batch scoring and by online serving.
"""
