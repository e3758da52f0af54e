"""One FeatureView per dbt feature mart, schema taken from the model yml (via the dbt manifest).

``customer_product_monthly`` reads the packed model (``feat_customer_product_monthly_packed``): keyed by
customer, one list per customer x product feature (see ``nextbest.features.packing``).
"""

from nextbest.features.repo import cli_definitions

customer_monthly = cli_definitions().view("customer_monthly")
product_monthly = cli_definitions().view("product_monthly")
customer_product_monthly = cli_definitions().view("customer_product_monthly")
