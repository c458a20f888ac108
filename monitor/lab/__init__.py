"""The lab: simulated meeting points on loopback, for tests, demos and operator training.

``Lab(lab_inventory(inv))`` answers what the probes send (SIP OPTIONS, media
echo, HTTP status page; ICMP is the kernel's) with impairments that can change
while it runs. Importing this package does not load aiohttp; the control API
(:mod:`monitor.lab.control`) does.
"""

from monitor.lab.addresses import lab_host, lab_inventory
from monitor.lab.impairment import Impairment
from monitor.lab.lab import Endpoint, Lab, UnknownPointError

__all__ = ["Endpoint", "Impairment", "Lab", "UnknownPointError", "lab_host", "lab_inventory"]
