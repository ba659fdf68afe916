"""netbroker-pilot: the worker-node pilot.

It runs on worker nodes with only the standard library and ``requests``, and
talks to netbroker over HTTP only: it imports nothing else of netbroker.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
