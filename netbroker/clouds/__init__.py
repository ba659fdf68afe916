"""Dynamic cloud membership: which foreign sites join a Tier-1's cloud, and why.

``membership`` decides from the consolidated links to each Tier-1 and the
sites' job success (the pure ``decide_membership``) and stores each join and leave.

May import: ``netbroker.network``, ``netbroker.db`` and ``netbroker.common``.
"""
