"""The event pipeline: the outbox (its one format), clicks, the relay, the worker's ingest, the quarantine."""
