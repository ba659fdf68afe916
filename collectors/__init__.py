"""Collectors: FTS, perfSONAR, federated-XRootD and NWS records -> metric samples.

Each source's shapes have their own module here; ``ingest`` turns records into
samples through ``netbroker.network``. An edge: may import the core and below;
the core never imports it.
"""

__all__: list[str] = []
