"""One FeatureView per dbt feature mart, schema taken from the model yml (via the dbt manifest)."""

from nextbest.features.repo import cli_definitions

globals().update({view.name: view for view in cli_definitions().views})
