"""The pilot-facing job dispatcher: acquire, update, heartbeat, event ranges.

Mounted by ``netbroker.api`` in ``netbroker serve``. An edge: may import the core,
``netbroker.web`` and below; never ``netbroker.api`` (which imports it), and the
core never imports it.
"""

__all__: list[str] = []
