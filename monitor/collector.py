"""The garbage collector's settings for a process that runs for hours.

CPython's cyclic collector runs its youngest generation every 700 new container
objects. A server taking in batches of 2,000 results (each result about ten
containers while it is read: the result, its phases, its details, the list of RTTs)
triggers a collection every few dozen results, and each one scans everything still
alive in that batch; the older generations then rescan the whole health model. In
the ingest benchmark (docs/benchmarks.md, "Agents over MQTT") that was half of the
server's CPU.

Nothing that confmon keeps for long forms reference cycles that only the collector
could free, so two settings, applied once start-up is over, remove most of that work
without letting garbage pile up:

* :func:`gc.freeze` moves what start-up built (modules, the inventory, the health
  model's points) out of the collector's sight for good;
* the youngest generation's threshold goes from 700 to :data:`YOUNG_THRESHOLD`, so a
  collection runs once per a few batches instead of many times per batch. Memory is
  not at stake: objects without cycles are freed by reference counting as before,
  whatever the threshold.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "settle"]

#: containers allocated (net) between two collections of the youngest generation
YOUNG_THRESHOLD = 100_000


def settle() -> None:
    """Freeze what exists now and raise the youngest generation's threshold (idempotent)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
