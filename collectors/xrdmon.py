"""XRootD detailed-monitoring packets, as the OSG shoveler forwards them -> per-file read rates.

The packets are XRootD's UDP datagrams (xrootd/xrootd
``src/XrdXrootd/XrdXrootdMonData.hh``, all big-endian), which
opensciencegrid/xrootd-monitoring-shoveler (``packageudp.go``) forwards as
JSON lines ``{"remote": "ip:port", "version": "...", "data": "<base64 of
the packet>"}``. Every packet opens with ``XrdXrootdMonHeader``: ``code``
(1 byte), ``pseq`` (1), ``plen`` (2, the packet's length), ``stod`` (4, the
server's start time). By code:

- maps, ``XrdXrootdMonMap``: ``dictid`` (4) then text. ``=`` names the
  server (``user.pid:sid@host`` then ``&site=...&port=...&pgm=...``),
  ``u`` a user session (``[prot/]user.pid:sid@host``: the client's host),
  ``d`` a path, ``i`` application info, ``p``/``x`` FRM events;
- ``f``, the file stream: records, each opening with ``XrdXrootdMonFileHdr``
  (``recType``, ``recFlag``, ``recSize`` 2, ``fileID``/``userID`` 4). The
  first is ``isTime`` (``tBeg``, ``tEnd``: the window the following records
  fall in, ``sID``); ``isOpen`` has the file size and, with ``hasLFN``, the
  user's dictid and the path; ``isClose`` has ``XrdXrootdMonStatXFR``
  (bytes ``read``, ``readv``, ``write``, 8 each; ``hasOPS``/``hasSSQ``
  statistics follow, skipped by ``recSize``); ``isXfr``, ``isDisc``;
- ``r``, ``t``, ``g`` (redirects, traces, g-stream) and XML summaries:
  not read here (a forwarded summary is ``collectors.xrdsummary``'s).

A file close, with its open and its user's map seen earlier in the batch
(per server: its address and start time), is one read: ``read + readv``
bytes from the server (its ``=`` map's host, else its address) to the client
(the ``u`` map's host), over the time from the open's window start to the
close's window end (the finest the stream tells: a lower bound on the
rate). A close without those is rejected saying which is missing; a close
that read nothing, and every other packet, is counted as not a link.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from collectors.records import HostRef, NotALink, Outcome, ParsedSample, Record, Rejected
from netbroker.common.metric_kinds import MetricKind
from netbroker.common.metric_kinds import MetricSource as Source

__all__ = ["PACKET", "Correlator", "is_packet"]

PACKET = "XRootD detailed monitoring packet (shoveler)"

_HEADER = struct.Struct(">BBHi")  # code, pseq, plen, stod
_MAP_ID = struct.Struct(">I")
_FILE_HDR = struct.Struct(">BBhI")  # recType, recFlag, recSize, fileID | userID | nRecs
_TOD = struct.Struct(">ii")  # tBeg, tEnd
_OPEN = struct.Struct(">q")  # fsz
_XFR = struct.Struct(">qqq")  # read, readv, write
_IS_CLOSE, _IS_OPEN, _IS_TIME, _IS_XFR, _IS_DISC = range(5)
_HAS_LFN = 0x01
_MAPS = {"=": "server identity", "d": "path", "i": "application info", "p": "FRM purge",
         "u": "user", "x": "FRM transfer", "U": "experiment/activity", "T": "token"}
_OTHERS = {"r": "redirect stream", "t": "trace stream", "g": "g-stream"}


def is_packet(record: dict[str, Any]) -> bool:
    """Whether a JSON record is a shoveler-forwarded packet."""
    return isinstance(record.get("data"), str) and "remote" in record


@dataclass
class _Open:
    time_s: int
    user: int
    path: str


@dataclass
class Correlator:
    """The maps and open files of a batch's packets, per server, and what each packet gives.

    One instance reads one batch in order (an open, a user map, before the
    close that needs them). :meth:`read` returns the outcomes of one packet.
    """

    servers: dict[tuple[str, int], str] = field(default_factory=dict)
    users: dict[tuple[str, int, int], str] = field(default_factory=dict)
    opens: dict[tuple[str, int, int], _Open] = field(default_factory=dict)

    def read(self, position: int, record: dict[str, Any],
             summary: Callable[[bytes, int], Iterator[Outcome]]) -> Iterator[Outcome]:
        """The outcomes of one forwarded packet at ``position``; ``summary`` reads an XML one."""
        try:
            remote = _remote_address(record.get("remote"))
            packet = base64.b64decode(record["data"], validate=True)
        except (ValueError, binascii.Error) as exc:
            yield Rejected(position, f"{exc} (a shoveler packet is {{\"remote\": \"ip:port\", "
                                     "\"data\": \"<base64 of the UDP packet>\"})", shape=PACKET)
            return
        if packet[:1] == b"<":
            yield from summary(packet, position)
            return
        try:
            code, stod = self._header(packet)
            if code == "f":
                yield from self._file_stream(position, packet, (remote, stod))
            elif code in _MAPS:
                yield self._map(position, code, packet, (remote, stod))
            elif code in _OTHERS:
                yield NotALink(position, f"XRootD {_OTHERS[code]} packet: not read by "
                                         "netbroker", PACKET)
            else:
                raise ValueError(f"unknown packet code {code!r} (expected one of "
                                 f"{''.join(sorted({*_MAPS, *_OTHERS, 'f'}))})")
        except (ValueError, struct.error) as exc:
            yield Rejected(position, f"XRootD packet: {exc}", shape=PACKET)

    @staticmethod
    def _header(packet: bytes) -> tuple[str, int]:
        if len(packet) < _HEADER.size:
            raise ValueError(f"{len(packet)} bytes, shorter than its 8-byte header")
        code, _, plen, stod = _HEADER.unpack_from(packet)
        if plen != len(packet):
            raise ValueError(f"header plen {plen} but the packet has {len(packet)} bytes")
        return chr(code), stod

    def _map(self, position: int, code: str, packet: bytes, server: tuple[str, int]) -> Outcome:
        """Remember what a map names (server host, user host); a map is not a link."""
        (dictid,) = _MAP_ID.unpack_from(packet, _HEADER.size)
        text = packet[_HEADER.size + 4:].rstrip(b"\x00").decode("utf-8", errors="replace")
        first = text.split("\n", 1)[0]
        host = first.rsplit("@", 1)[1].strip() if "@" in first else ""
        if code == "=" and host:
            self.servers[server] = host
        elif code == "u" and host:
            self.users[(*server, dictid)] = host
        return NotALink(position, f"XRootD {_MAPS[code]} map: the context of file records, "
                                  "not a link", PACKET)

    def _file_stream(self, position: int, packet: bytes,
                     server: tuple[str, int]) -> Iterator[Outcome]:
        """The outcomes of an f-stream packet: one per close, else one for the packet."""
        window, closes, at = (0, 0), 0, _HEADER.size
        while at < len(packet):
            kind, flag, size, ident = _FILE_HDR.unpack_from(packet, at)
            if size < _FILE_HDR.size or at + size > len(packet):
                raise ValueError(f"file record at byte {at} has recSize {size}, past the "
                                 f"packet's {len(packet)} bytes")
            body = packet[at + _FILE_HDR.size:at + size]
            if kind == _IS_TIME:
                window = _TOD.unpack_from(body)
            elif kind == _IS_OPEN:
                self._open(body, flag, (*server, ident), window[0])
            elif kind == _IS_CLOSE:
                closes += 1
                yield self._close(position, body, (*server, ident), window[1])
            at += size
        if not closes:
            yield NotALink(position, "XRootD f-stream packet without file closes (opens, "
                                     "times, disconnects: context)", PACKET)

    def _open(self, body: bytes, flag: int, key: tuple[str, int, int], tbeg: int) -> None:
        user, path = 0, ""
        if flag & _HAS_LFN and len(body) >= _OPEN.size + 4:
            (user,) = _MAP_ID.unpack_from(body, _OPEN.size)
            path = body[_OPEN.size + 4:].split(b"\x00", 1)[0].decode("utf-8", errors="replace")
        self.opens[key] = _Open(tbeg, user, path)

    def _close(self, position: int, body: bytes, key: tuple[str, int, int],
               tend: int) -> Outcome:
        """One file close: a read rate, or why not."""
        remote, stod, fileid = key
        origin = f"xrdmon:{remote}:{stod}:{fileid}"
        read, readv, _ = _XFR.unpack_from(body)  # and write
        if read + readv <= 0:
            return NotALink(position, "XRootD file close without bytes read (a write, or "
                                      "an open and close)", PACKET)
        opened = self.opens.pop(key, None)
        if opened is None:
            return Rejected(position, f"file close of dictid {fileid}: its open is not in the "
                                      "batch (no start time, so no rate)", origin, PACKET)
        client = self.users.get((remote, stod, opened.user))
        if client is None:
            return Rejected(position, f"file close of dictid {fileid}: no user map ('u') for "
                                      f"user dictid {opened.user} in the batch (no client host)",
                            origin, PACKET)
        seconds = tend - opened.time_s
        if seconds <= 0:
            return Rejected(position, f"file close of dictid {fileid}: window end {tend} not "
                                      f"after the open's {opened.time_s}", origin, PACKET)
        src = _host(self.servers.get((remote, stod), remote))
        moved = float(read + readv)
        return Record(position, PACKET, (
            ParsedSample(Source.XROOTD, f"{origin}:throughput", src, _host(client),
                         MetricKind.THROUGHPUT, moved / seconds / 1e6, float(tend), moved,
                         "bytes/(f-stream window s)"),
            ParsedSample(Source.XROOTD, f"{origin}:success", src, _host(client),
                         MetricKind.SUCCESS, 1.0, float(tend), 1.0, "read")))


def _remote_address(raw: Any) -> str:
    """The sending server's address from ``remote`` (``ip:port``, ``[v6]:port``)."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("missing remote (the server's ip:port)")
    text = raw.strip()
    if text.startswith("[") and "]" in text:
        return text[1:text.index("]")]
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def _host(name: str) -> HostRef:
    bare = name.strip().strip("[]").rstrip(".").lower()
    try:
        return HostRef("ip", str(ipaddress.ip_address(bare)))
    except ValueError:
        return HostRef("host", bare)
