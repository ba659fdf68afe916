"""``python -m netbroker``: the same as the ``netbroker`` command."""

from netbroker.cli import main

main()
