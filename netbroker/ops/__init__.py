"""Operations tools: the exactly-once drill, a local cluster behind HAProxy,
``netbroker doctor``, and a throwaway message broker for tests and drills.

An edge: may import the core, ``netbroker.service`` and ``dispatcher``; never ``pilot``.
"""
