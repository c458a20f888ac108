"""What reads the state: Prometheus exposition, the JSON API and SSE stream, the event log."""
