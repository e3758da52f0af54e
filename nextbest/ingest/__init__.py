"""Raw data contract (``nextbest.ingest.contract``) and its validating, atomic
ingest (``nextbest.ingest.store``)."""
