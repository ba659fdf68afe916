"""Writes ``shoveler.jsonl``: synthetic XRootD detailed-monitoring packets, shoveler-forwarded.

Synthetic, per xrootd/xrootd ``src/XrdXrootd/XrdXrootdMonData.hh`` (the
binary layout, big-endian) and opensciencegrid/xrootd-monitoring-shoveler
``packageudp.go`` (the JSON line: ``remote``, ``version``, ``data`` the
packet in base64). Every value is written out below; the tests compute what
the packets mean from these numbers by hand. Run it to rewrite the file:

    python tests/data/xrootd/make_shoveler_packets.py
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

__all__ = ["PACKETS", "main"]

REMOTE = "192.0.2.50:32768"  # the server's address, as the shoveler saw it
STOD = 1763600000  # the server's start time

HEADER = struct.Struct(">BBHi")  # code, pseq, plen, stod


def packet(code: str, body: bytes, seq: int, plen: int | None = None) -> bytes:
    """A datagram: the header (plen the length, unless told otherwise), then the body."""
    length = HEADER.size + len(body)
    return HEADER.pack(ord(code), seq, length if plen is None else plen, STOD) + body


def mapping(code: str, dictid: int, text: str, seq: int) -> bytes:
    """A map packet (XrdXrootdMonMap): dictid, then its text."""
    return packet(code, struct.pack(">I", dictid) + text.encode(), seq)


def tod(tbeg: int, tend: int, n_xfr: int = 0, n_total: int = 0) -> bytes:
    """XrdXrootdMonFileTOD: header (isTime, hasSID, 24 bytes, nRecs), tBeg, tEnd, sID."""
    return struct.pack(">BBhhhiiq", 2, 0x01, 24, n_xfr, n_total, tbeg, tend, 42)


def opened(fileid: int, size: int, user: int, lfn: str) -> bytes:
    """XrdXrootdMonFileOPN with hasLFN: header, fsz, then the user's dictid and the lfn."""
    name = lfn.encode() + b"\x00" * (4 - len(lfn) % 4)  # null-terminated, 4-byte aligned
    size_bytes = 8 + 8 + 4 + len(name)
    return struct.pack(">BBhIqI", 1, 0x01, size_bytes, fileid, size, user) + name


def closed(fileid: int, read: int, readv: int, write: int) -> bytes:
    """XrdXrootdMonFileCLS without OPS or SSQ: header, then XrdXrootdMonStatXFR."""
    return struct.pack(">BBhIqqq", 0, 0, 32, fileid, read, readv, write)


def disconnected(userid: int) -> bytes:
    """XrdXrootdMonFileDSC: the header alone, the user's dictid in its union."""
    return struct.pack(">BBhI", 4, 0, 8, userid)


PATH = "/atlas/rucio/data23_13p6TeV/ab/cd/AOD.12345678._000001.pool.root.1"
PACKETS: list[bytes | str] = [
    # 1-3: the maps: the server (its host), a user session (the client's host), a path
    mapping("=", 0, "xrootd.4242:27@xrd01.cern.ch\n&site=CERN-PROD&port=1094&inst=atlas"
                    "&pgm=xrootd&ver=v5.6.9", 0),
    mapping("u", 101, "xrootd/alice.1234:56@wn042.cc.in2p3.fr\n&p=gsi&n=alice"
                      "&h=wn042.cc.in2p3.fr&o=atlas&r=&g=&m=&I=4", 1),
    mapping("d", 201, f"alice.1234:56@wn042.cc.in2p3.fr\n{PATH}", 2),
    # 4: opens at 10:00:00 (the window's start): 201 and 202 by user 101, 301 by user 999
    packet("f", tod(1763632800, 1763632805, 0, 4)
           + opened(201, 2_000_000_000, 101, PATH)
           + opened(202, 500_000_000, 101, PATH.replace("000001", "000002"))
           + opened(301, 100_000_000, 999, PATH.replace("000001", "000003")), 3),
    # 5: closes, the window ending 10:02:00: 201 read 1.0e9 + 0.2e9 bytes in 120 s;
    # 202 only wrote; 999 was never opened in the batch; 301's user has no map
    packet("f", tod(1763632900, 1763632920, 0, 5)
           + closed(201, 1_000_000_000, 200_000_000, 0)
           + closed(202, 0, 0, 500_000_000)
           + closed(999, 100, 0, 0)
           + closed(301, 50_000_000, 0, 0), 4),
    # 6: a disconnect only
    packet("f", tod(1763632930, 1763632931, 0, 2) + disconnected(101), 5),
    # 7: a redirect-stream packet (not read)
    packet("r", struct.pack(">q", 7) + b"\x00" * 8, 6),
    # 8: not base64
    "not base64 at all!",
    # 9: plen says 100 bytes, the packet has fewer
    packet("u", struct.pack(">I", 102) + b"bob.1:2@wn1.example.org", 7, plen=100),
    # 10: a summary datagram the shoveler forwarded as it came
    '<statistics tod="1763632940" ver="v5.6.9" src="xrd01.cern.ch:1094" tos="1763600000" '
    'pgm="xrootd" ins="atlas" pid="4242"><stats id="link"><num>3</num><in>1000</in>'
    '<out>3000</out></stats></statistics>',
]


def main() -> None:
    lines = []
    for item in PACKETS:
        if isinstance(item, bytes):
            data = base64.b64encode(item).decode()
        elif item.startswith("<"):
            data = base64.b64encode(item.encode()).decode()
        else:
            data = item
        lines.append(json.dumps({"remote": REMOTE, "version": "1.4.0", "data": data}))
    (Path(__file__).parent / "shoveler.jsonl").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
