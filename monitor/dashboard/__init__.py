"""The operator's live terminal dashboard (rich), attached to a running monitor's API."""
