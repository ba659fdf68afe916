"""A PanDA Pilot 3 configuration pointing every server URL at one netbroker.

Reads the pilot's own ``pilot/util/default.cfg`` (3.7 or 3.11, they differ)
and writes a copy in which the PanDA server, the queue and storage
descriptions, Rucio's traces and the message broker are netbroker's, so the
pilot never waits on a host it cannot reach. Give the pilot the file with
``HARVESTER_PILOT_CONFIG``.

    python examples/local-site/pilot_config.py --pilot .interop/src \
        --server http://127.0.0.1:25080 > pilot.cfg

Standard library only.
"""

from __future__ import annotations

import argparse
import configparser
import sys
from pathlib import Path
from typing import TextIO


def pilot_config(pilot: Path, server: str, out: TextIO) -> None:
    """Write ``pilot``'s default configuration to ``out`` with ``server`` as every URL.

    ``pilot`` is the folder holding the pilot's ``pilot.py``; ``server`` the
    netbroker base URL (``http://host:port``, no path).
    """
    config = configparser.ConfigParser(interpolation=None)
    config.read(pilot / "pilot" / "util" / "default.cfg")
    for section, key, value in [
            ("Pilot", "pandaserver", server), ("Pilot", "iddsserver", server),
            ("Pilot", "rtlogging", f"logstash;{server}"),
            ("Information", "queuedata_url",
             server + "/cache/schedconfig/{pandaqueue}.all.json"),
            ("Information", "queues_url", server + "/cache/schedconfig/{pandaqueue}.json"),
            ("Information", "storages_url", server + "/cache/ddmendpoints.json"),
            ("Rucio", "url", server + "/traces/"), ("Rucio", "host", server),
            ("Message_broker", "url", "127.0.0.1")]:
        config.set(section, key, value)
    config.write(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pilot", required=True, type=Path,
                        help="The folder of the pilot's pilot.py.")
    parser.add_argument("--server", required=True, help="netbroker's http://host:port")
    args = parser.parse_args(argv)
    pilot_config(args.pilot, args.server.rstrip("/"), sys.stdout)


if __name__ == "__main__":
    main()
