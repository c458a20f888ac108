"""``python -m monitor`` is the same as ``confmon``."""

from monitor.entry import main

main()
