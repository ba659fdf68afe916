"""Network metrics: samples, buckets, 1h/1d/1w windows, the consolidated link matrix.

``metrics`` ingests samples and reads windows and matrices; ``graph`` builds
the site graph from the consolidated links.

May import: ``netbroker.db`` and ``netbroker.common``.
"""
