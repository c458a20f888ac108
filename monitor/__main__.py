"""``python -m monitor`` is the same as ``confmon``."""

from monitor.cli import main

raise SystemExit(main())
