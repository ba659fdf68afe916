"""What a pilot needs to stage a job's files: where to read each input, where to write.

For every input file the sources are the endpoints holding an available
copy, best first: a disk copy at the job's own site, then disk copies
elsewhere, then tape; each with its URL (Rucio's deterministic path under
the endpoint's base URL). Outputs and the log go to the job's site's disk
endpoint with the most free space. :func:`panda_file_fields` gives the same
in the fields of PanDA's getJob answer (comma-separated, one entry per file).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.db.schema import queues
from netbroker.db.tasks import TaskDB
from netbroker.registry.datasets import pfn

__all__ = ["job_files", "panda_file_fields"]


def job_files(engine: Engine, job: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``{"inputs": [...], "outputs": [...]}`` for a job (both empty for a job without files).

    Input: ``lfn, scope, dataset, bytes, adler32, guid, sources: [{endpoint, url}]``;
    output: ``lfn, scope, dataset, kind (output|log), endpoint, url``.
    """
    if job.get("task_id") is None:
        return {"inputs": [], "outputs": []}
    with engine.connect() as conn:
        db = TaskDB(conn)
        rows = db.job_files(job["id"])
        if not rows:
            return {"inputs": [], "outputs": []}
        sources = db.input_sources(job["id"])
        destination = db.output_endpoint(job["queue_id"]) if job["queue_id"] else None
        site_id = conn.execute(sa.select(queues.c.site_id)
                               .where(queues.c.id == job["queue_id"])).scalar()
    by_file: dict[int, list[dict[str, Any]]] = {}
    for s in sources:
        by_file.setdefault(s["job_file_id"], []).append(s)
    inputs, outputs = [], []
    for f in rows:
        if f["kind"] == "input":
            copies = sorted(by_file.get(f["id"], []), key=lambda s: (
                s["kind"] != "disk", s["site_id"] != site_id, s["endpoint"]))
            inputs.append({
                "lfn": f["lfn"], "scope": f["scope"], "dataset": f["dataset"],
                "bytes": f["bytes"], "adler32": f["adler32"], "guid": f["guid"],
                "sources": [{"endpoint": s["endpoint"], "url": pfn(s["url"], f["scope"], f["lfn"])}
                            for s in copies if s["url"]]})
        else:
            outputs.append({
                "lfn": f["lfn"], "scope": f["scope"], "dataset": f["dataset"], "kind": f["kind"],
                "endpoint": destination["name"] if destination else "",
                "url": pfn(destination["url"], f["scope"], f["lfn"])
                if destination and destination["url"] else ""})
    return {"inputs": inputs, "outputs": outputs}


def panda_file_fields(files: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """The getJob answer's file fields, PanDA style: comma-separated, one per file.

    >>> f = {"inputs": [{"lfn": "a", "scope": "s", "dataset": "d", "bytes": 3,
    ...                  "adler32": "0a0b0c0d", "guid": "g", "sources": [{"endpoint": "E",
    ...                  "url": "u"}]}], "outputs": [{"lfn": "o", "scope": "s", "dataset": "D",
    ...                  "kind": "output", "endpoint": "X", "url": "v"}]}
    >>> fields = panda_file_fields(f)
    >>> fields["inFiles"], fields["checksum"], fields["ddmEndPointIn"], fields["outFiles"]
    ('a', 'ad:0a0b0c0d', 'E', 'o')
    """
    ins = files["inputs"]
    outs = [f for f in files["outputs"] if f["kind"] == "output"]
    logs = [f for f in files["outputs"] if f["kind"] == "log"]

    def join(items: list[dict[str, Any]], key: str) -> str:
        return ",".join(str(i[key] if i[key] is not None else "") for i in items)

    out_all = outs + logs
    return {
        "inFiles": join(ins, "lfn"), "GUID": join(ins, "guid"), "fsize": join(ins, "bytes"),
        "checksum": ",".join(f"ad:{i['adler32']}" if i["adler32"] else "" for i in ins),
        "scopeIn": join(ins, "scope"), "realDatasetsIn": join(ins, "dataset"),
        "prodDBlocks": join(ins, "dataset"), "prodDBlockToken": ",".join("NULL" for _ in ins),
        "ddmEndPointIn": ",".join(i["sources"][0]["endpoint"] if i["sources"] else ""
                                  for i in ins),
        "outFiles": join(out_all, "lfn"), "scopeOut": join(outs, "scope"),
        "realDatasets": join(out_all, "dataset"), "destinationDblock": join(out_all, "dataset"),
        "ddmEndPointOut": join(out_all, "endpoint"),
        "destinationSE": out_all[0]["endpoint"] if out_all else "",
        "logFile": logs[0]["lfn"] if logs else "", "scopeLog": logs[0]["scope"] if logs else "",
    }
