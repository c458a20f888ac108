"""The Grafana dashboards and the script that writes them (see generate.py)."""
