"""Training: ranking groups -> LightGBM lambdarank -> calibration -> a versioned model bundle.

The modules here are pure and in memory: they take frames that were already retrieved from the
feature store (``nextbest.training.datasets``) and never import Feast or dbt.
"""
