"""The session report (``confmon report``): a meeting's event log turned into the document
the operators hand in afterwards.

:mod:`monitor.report.source` reads the log (read-only, checked), :mod:`monitor.report.compute`
makes every figure once, as a typed :class:`~monitor.report.compute.Report`; the renderers
(:mod:`~monitor.report.as_html`, :mod:`~monitor.report.as_markdown`,
:mod:`~monitor.report.as_csv`, :mod:`~monitor.report.as_json`) only format that same report,
each as one function ``render(report) -> str``, by name in
:data:`monitor.report.formats.FORMATS`.
"""
