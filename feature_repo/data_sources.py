"""One parquet FileSource per dbt feature mart, ``<view>_source``, paths resolved from NEXTBEST_HOME."""

from nextbest.features.repo import cli_definitions

globals().update({source.name: source for source in cli_definitions().sources})
