"""Campaigns: from calibrated probabilities to a targeted offer, a powered A/B test and its readout.

``plan`` selects the audience and runs the power analysis, ``assign`` splits it into arms (seeded,
stratified, audited by a sample-ratio-mismatch check), ``readout`` tests the outcome, ``simulate`` proves
the chain on the synthetic bank's true probabilities. ``scores`` is the bridge to the one scoring path
(``nextbest.training.scoring``); ``cli`` is ``nextbest campaign plan|assign|readout``.
"""
