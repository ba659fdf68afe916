"""A local site anyone can run: its grid document, its storage and its input files.

Writes a grid document in CRIC's shape (a cloud, a site per name given, each
with one POSIX storage endpoint under ``STORAGE/<site>`` and one unified
queue) and a small input dataset whose files it puts in place on every
site's storage, at Rucio's deterministic paths, with their sizes and
Adler-32 checksums in the document. The queues carry CRIC's catchall
``mv_final_destination``, so the PanDA pilot's ``mv`` copy tool reads the
inputs from the storage and writes the outputs to it (with the pilot's
``--input-destination-dir STORAGE/<site>/rucio``).

    python examples/local-site/make_site.py --storage /srv/netbroker-storage > grid.json
    netbroker grid import grid.json

Standard library only; every path is absolute.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import uuid
import zlib
from pathlib import Path
from typing import Any


def rucio_path(scope: str, lfn: str) -> str:
    """Rucio's deterministic path of a file, as the pilot builds it: the scope's dotted
    parts, two pairs of hex digits of md5(scope:lfn), the file name."""
    digest = hashlib.md5(f"{scope}:{lfn}".encode(), usedforsecurity=False).hexdigest()
    return "/".join([*scope.split("."), digest[0:2], digest[2:4], lfn])


def make_site(storage: Path, sites: list[str], scope: str, dataset: str, files: int,
              file_bytes: int, seed: int = 1) -> dict[str, Any]:
    """The grid document; the input files written under each site's ``rucio`` folder."""
    rng = random.Random(seed)
    contents = [rng.randbytes(file_bytes) for _ in range(files)]
    names = [f"{dataset}._{i:06d}.dat" for i in range(1, files + 1)]
    doc: dict[str, Any] = {"cloud": {"LOCAL": {"tier1": sites[0]}}, "site": {},
                           "ddmendpoint": {}, "pandaqueue": {}}
    for site in sites:
        root = storage / site / "rucio"
        for name, content in zip(names, contents, strict=True):
            path = root / rucio_path(scope, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        endpoint, protocol_path = f"{site}_DATADISK", f"{root}/"
        doc["site"][site] = {"cloud": "LOCAL", "tier_level": 1 if site == sites[0] else 2,
                             "country": "XX", "status": "online",
                             "datapolicies": ["Nucleus"] if site == sites[0] else []}
        doc["ddmendpoint"][endpoint] = {
            "site": site, "type": "DATADISK", "token": "", "is_tape": False,
            "is_deterministic": True, "state": "ACTIVE", "se": "file://localhost",
            "arprotocols": {activity: [{"endpoint": "file://localhost", "path": protocol_path,
                                        "flavour": "POSIX", "id": 1}]
                            for activity in ("read_lan", "read_wan", "write_lan", "write_wan",
                                             "delete_lan")}}
        doc["pandaqueue"][f"{site}_UCORE"] = {
            "atlas_site": site, "panda_resource": f"{site}_UCORE", "type": "unified",
            "status": "online", "corecount": 1, "maxrss": 4000, "maxtime": 3600,
            "maxwdir": 20000, "pilot_slots": 4, "catchall": "mv_final_destination",
            "astorages": {"read_lan": [endpoint], "write_lan": [endpoint]},
            "copytools": {"mv": {"setup": ""}}}
    doc["dataset"] = [{"scope": scope, "name": dataset,
                       "files": [{"name": name, "bytes": len(content),
                                  "guid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                                  "adler32": f"{zlib.adler32(content):08x}"}
                                 for name, content in zip(names, contents, strict=True)],
                       "replicas": [{"rse": f"{site}_DATADISK", "state": "AVAILABLE"}
                                    for site in sites]}]
    return doc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, type=Path,
                        help="Folder of the sites' storage (created; absolute).")
    parser.add_argument("--site", action="append", dest="sites",
                        help="A site's name (repeat for several; default LOCAL-SITE).")
    parser.add_argument("--dataset", default="local:local.input", help="scope:name")
    parser.add_argument("--files", type=int, default=2)
    parser.add_argument("--file-bytes", type=int, default=4096)
    args = parser.parse_args(argv)
    storage = Path(os.path.abspath(args.storage))
    scope, _, name = args.dataset.partition(":")
    doc = make_site(storage, args.sites or ["LOCAL-SITE"], scope, name, args.files,
                    args.file_bytes)
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
