"""The core: result types, ingest, scheduler, health model and the state-change stream."""
