"""The one FeatureService (``ranker_v1``): every feature of every view, the ranker's only feature list."""

from nextbest.features.repo import cli_definitions

ranker_v1 = cli_definitions().service
