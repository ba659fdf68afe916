"""Workload: tasks, jobs, brokerage, rebrokerage, priorities, users.

``tasks`` defines tasks and brokers them into jobs; ``brokerage`` holds the
pure decisions (clouds for a task, sites for its jobs); ``gridview`` loads
what they decide on; ``rebrokerage`` moves waiting jobs; ``priority`` sets
fair share, boosts, aging and failure penalties; ``users`` shows a user's
share; ``runtime_config`` applies, audits and previews operators' runtime changes.

May import: ``netbroker.clouds``, ``netbroker.registry``, ``netbroker.network``,
``netbroker.db`` and ``netbroker.common``.
"""
