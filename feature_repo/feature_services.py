"""The one FeatureService (``ranker_v1``): every feature of every view, the ranker's only feature list."""

from nextbest.features.repo import cli_definitions

ranker = cli_definitions().service
