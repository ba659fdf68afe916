"""netbroker: network-aware brokerage and data placement for computing grids."""

__version__ = "0.1.0"

__all__ = ["__version__"]
