"""The pilot-facing job dispatcher: acquire, update, heartbeat, event ranges.

Built by the job-cycle issue and mounted in ``netbroker serve``; it imports
the core, the core never imports it.
"""

__all__: list[str] = []
