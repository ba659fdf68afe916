"""The grid registry: clouds, sites, queues, storage endpoints, datasets.

``grid_document`` parses and checks a grid document (pure), ``cric`` reads
CRIC's dump shapes, ``sites`` and ``datasets`` are their records,
``registry`` holds the use cases (import a document, read the registry) and
``activity`` gathers what one site is doing, for its monitor page.

May import: ``netbroker.clouds``, ``netbroker.network``, ``netbroker.db`` and
``netbroker.common``.
"""
