"""One parquet FileSource per dbt feature mart, ``<view>_source``, paths resolved from NEXTBEST_HOME.

A new ``feat_*`` model with ``meta.feast`` needs a line here and in ``feature_views.py`` (the test
``test_feast_apply_on_the_feature_repo_registers_every_view`` names a missing one).
"""

from nextbest.features.repo import cli_definitions

customer_monthly_source = cli_definitions().source("customer_monthly_source")
product_monthly_source = cli_definitions().source("product_monthly_source")
customer_product_monthly_source = cli_definitions().source("customer_product_monthly_source")
