"""Test data made on the fly, in the sources' real formats."""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path

DATA = Path(__file__).parent / "data"
LAST_FTS_END_MS = 1795514580000  # the latest timestamp_tr_comp in transfer_complete.jsonl


def recent_fts_lines(ended_s_ago: float = 60.0) -> bytes:
    """The FTS test messages moved so that the last ended ``ended_s_ago`` seconds ago.

    Ingestion refuses samples older than the raw retention, counted from the
    real clock; tests that go through the API or the CLI use these.
    """
    shift = int((time.time() - ended_s_ago) * 1000) - LAST_FTS_END_MS
    out = []
    for line in (DATA / "fts" / "transfer_complete.jsonl").read_text().splitlines():
        msg = json.loads(line)
        for key in ("timestamp_tr_st", "timestamp_tr_comp", "tr_timestamp_start",
                    "tr_timestamp_complete"):
            msg[key] += shift
        out.append(json.dumps(msg))
    return "\n".join(out).encode()


def fts_transfers(src_rse: str, dst_rse: str, mbytes_per_s: float, n: int, end_s: float,
                  tag: str = "t") -> str:
    """``n`` finished FTS transfers of 1 GB at ``mbytes_per_s``, ending a minute apart
    up to ``end_s``: JSON lines in the transfer-complete format, Rucio RSEs named."""
    size = 1_000_000_000
    duration_ms = round(size / (mbytes_per_s * 1e6) * 1000)
    lines = []
    for i in range(n):
        end_ms = int((end_s - 60 * i) * 1000)
        lines.append(json.dumps({
            "tr_id": f"{tag}-{src_rse}-{dst_rse}-{end_ms}-{i}", "vo": "atlas",
            "endpnt": "fts3-atlas.cern.ch", "src_se": "davs://src.example",
            "dst_se": "davs://dst.example", "t_final_transfer_state": "Ok",
            "file_metadata": {"src_rse": src_rse, "dst_rse": dst_rse},
            "timestamp_tr_st": end_ms - duration_ms, "timestamp_tr_comp": end_ms,
            "file_size": size, "tr_bt_transfered": size, "throughput": -1}))
    return "\n".join(lines)


GB = 1_000_000_000


def mini_grid(replicas: dict[str, list[str]] | None = None, *, files: int = 6,
              file_bytes: int = 10 * GB, queue_memory_mb: dict[str, int] | None = None,
              queue_status: dict[str, str] | None = None,
              pilot_slots: dict[str, int] | None = None,
              extra_dataset: str | None = None, se_urls: dict[str, str] | None = None,
              contents: list[bytes] | None = None, site_status: dict[str, str] | None = None,
              free_bytes: dict[str, int] | None = None,
              queues: dict[str, dict[str, object]] | None = None) -> str:
    """A three-cloud grid document in CRIC's shape, small enough to reason about.

    DE (Tier-1 FZK, nucleus; Tier-2s DESY and LRZ), UK (Tier-1 RAL; MAN) and
    FR (Tier-1 CC). Each site has one unified 8-core queue ``<SITE>_UCORE``
    (48 h, 64 GB, 100 pilot slots) and a disk endpoint ``<SITE>_DATADISK``
    (its URL from ``se_urls`` or ``davs://se.<site>.example:443``); FZK also
    has ``FZK_TAPE``. The dataset ``data23:data23.AOD`` has ``files`` files of
    ``file_bytes`` (or, given ``contents``, one file per content with its real
    size and Adler-32), with replicas on the endpoints named in ``replicas``
    (by dataset name, default the AOD on DESY_DATADISK).
    """
    layout = {"FZK": ("DE", 1), "DESY": ("DE", 2), "LRZ": ("DE", 2), "RAL": ("UK", 1),
              "MAN": ("UK", 2), "CC": ("FR", 1)}
    memory = queue_memory_mb or {}
    status = queue_status or {}
    replicas = replicas if replicas is not None else {"data23.AOD": ["DESY_DATADISK"]}
    doc: dict[str, dict[str, object]] = {
        "cloud": {"DE": {"tier1": "FZK"}, "UK": {"tier1": "RAL"}, "FR": {"tier1": "CC"}},
        "site": {}, "ddmendpoint": {}, "pandaqueue": {}}
    for site, (cloud, tier) in layout.items():
        doc["site"][site] = {"cloud": cloud, "tier_level": tier, "country": cloud,
                             "status": (site_status or {}).get(site, "online"),
                             "datapolicies": ["Nucleus"] if site == "FZK" else [],
                             "domains": [f"{site.lower()}.example"]}
        doc["ddmendpoint"][f"{site}_DATADISK"] = {
            "site": site, "type": "DATADISK", "is_tape": False, "state": "ACTIVE",
            "se": (se_urls or {}).get(site, f"davs://se.{site.lower()}.example:443"),
            "space_total_bytes": 10**15,
            "space_free_bytes": (free_bytes or {}).get(site, 5 * 10**14)}
        doc["pandaqueue"][f"{site}_UCORE"] = {
            "atlas_site": site, "panda_resource": f"{site}_UCORE", "type": "unified",
            "status": status.get(site, "online"), "corecount": 8,
            "maxrss": memory.get(site, 64000), "maxtime": 172800, "maxwdir": 200000,
            "pilot_slots": (pilot_slots or {}).get(site, 100), **(queues or {}).get(site, {})}
    doc["ddmendpoint"]["FZK_TAPE"] = {
        "site": "FZK", "type": "DATATAPE", "is_tape": True, "state": "ACTIVE",
        "se": "root://tape.fzk.example:1094", "space_total_bytes": 10**16,
        "space_free_bytes": 10**16}
    names = ["data23.AOD"] + ([extra_dataset] if extra_dataset else [])
    doc["dataset"] = [{
        "scope": "data23", "name": name,
        "files": [{"name": f"{name}._{i:06d}.pool.root.1",
                   "bytes": len(contents[i - 1]) if contents else file_bytes,
                   "guid": f"00000000-0000-4000-8000-{k:04d}{i:08d}",
                   "adler32": f"{zlib.adler32(contents[i - 1]):08x}" if contents else "0a0b0c0d"}
                  for i in range(1, (len(contents) if contents else files) + 1)],
        "replicas": [{"rse": rse, "state": "AVAILABLE"} for rse in replicas.get(name, [])]}
        for k, name in enumerate(names)]
    return json.dumps(doc)


def task_spec(name: str = "task.001", **over: object) -> dict[str, object]:
    """A task description over ``data23:data23.AOD``: 1 file per job, 2 h per file."""
    return {"name": name, "user": "alice", "input_dataset": "data23:data23.AOD",
            "transformation": "Reco_tf.py", "parameters": "--in $IN --out $OUT",
            "cores": 8, "memory_mb": 16000, "walltime_s": 7200, "files_per_job": 1, **over}


def perfsonar_documents(src_site: str, dst_site: str, n: int, end_s: float, *,
                        mbytes_per_s: float | None = None,
                        packet_loss: float | None = None) -> str:
    """``n`` perfSONAR measurements src -> dst a minute apart up to ``end_s``, as WLCG's
    ps_* documents (throughput in bits/s, packet loss a fraction), between the
    sites' perfSONAR hosts ``ps.<site>.example`` (mapped through the sites' domains)."""
    lines = []
    for i in range(n):
        doc: dict[str, object] = {
            "src_host": f"ps.{src_site.lower()}.example",
            "dest_host": f"ps.{dst_site.lower()}.example",
            "timestamp": int((end_s - 60 * i) * 1000)}
        if mbytes_per_s is not None:
            doc["throughput"] = mbytes_per_s * 8e6
        else:
            doc["packet_loss"] = packet_loss
        lines.append(json.dumps(doc))
    return "\n".join(lines)
