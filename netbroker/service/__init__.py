"""The running service: ``netbroker serve`` (``serve``) and its periodic cycles (``scheduler``).

An edge: it wires the core, the API, the collectors and the dispatcher together.
May import anything of ours except ``pilot``.
"""
