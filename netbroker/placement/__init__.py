"""Data placement: PD2P replication decisions and the replica catalogue.

``pd2p`` decides which popular datasets to copy where (and rebrokers the jobs
waiting for a copy once it is done); ``catalog`` shows datasets, their
replicas, popularity and decisions to people.

May import: ``netbroker.workload``, ``netbroker.clouds``, ``netbroker.registry``,
``netbroker.network``, ``netbroker.db`` and ``netbroker.common``.
"""
