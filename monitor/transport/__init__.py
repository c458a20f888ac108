"""How results reach the core: in-process from a local scheduler (MQTT comes next)."""
