"""Raw data contract (``ingest.contract``) and its validating, atomic ingest (``ingest.store``)."""
