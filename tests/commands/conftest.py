"""The lab fixtures (a small inventory on fresh ports, a running lab) for command tests."""

from tests.lab.conftest import inventory, lab, ports

__all__ = ["inventory", "lab", "ports"]
