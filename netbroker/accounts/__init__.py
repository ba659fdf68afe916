"""Accounts: API tokens, their roles, and who holds them.

May import: ``netbroker.db`` and ``netbroker.common``.
"""
