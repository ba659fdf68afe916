"""Collectors: FTS, perfSONAR, federated-XRootD and NWS records -> metric samples.

Each source gets its own module here (the network-matrix issue); they
import the core, the core never imports them.
"""

__all__: list[str] = []
