"""The ground floor: the vocabulary every layer shares.

Settings (``config``), the error tree (``errors``), metric kinds and sources
(``metric_kinds``), the job lifecycle (``lifecycle``), the enums the schema
stores (``enums``), pure functions over sample rows (``sample_rows``), units
and text helpers, and the process metrics and log format (``observability``).

May import: the standard library and third-party packages; nothing else of ours.
"""
