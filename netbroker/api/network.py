"""Network routes: push metric batches, read the matrix, a link's history, the NWS export."""

from __future__ import annotations

import io
import math
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from collectors import nws
from collectors.ingest import ingest
from netbroker.api.models import IngestOut, LinkPoint, MatrixOut, PathOut
from netbroker.common.errors import InvalidMetric
from netbroker.network import graph, metrics
from netbroker.network.metrics import MATRIX_UNITS, MetricKind, MetricSource
from netbroker.web.auth import require, roles_doc
from netbroker.web.deps import EngineDep, SettingsDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["network"])

Window = Literal["1h", "1d", "1w"]
SourceChoice = Literal["consolidated", "fts", "perfsonar", "xrootd", "nws"]
MatrixKind = Literal["throughput", "packet_loss", "owd", "rtt", "success", "latency",
                     "closeness"]
MAX_BATCH_BYTES = 64 * 2**20
EPOCH_MAX_S = 32_503_680_000.0  # the year 3000: any later "at" is a mistake


@router.post("/metrics/{source}", response_model=IngestOut,
             dependencies=[Depends(require("operator"))],
             openapi_extra={"requestBody": {"content": {
                 "application/json": {}, "application/x-ndjson": {}, "text/plain": {}},
                 "required": True}, **roles_doc("operator")})
async def push_metrics(source: MetricSource, request: Request, engine: EngineDep,
                       settings: SettingsDep) -> dict[str, object]:
    """Ingest a batch in the source's own format (the body as the source wrote it).

    Bad records are reported with their position and reason; the valid ones
    of the batch are stored; records already stored are counted as duplicates.
    """
    body = await request.body()
    if len(body) > MAX_BATCH_BYTES:
        raise InvalidMetric(f"batch of {len(body)} bytes exceeds {MAX_BATCH_BYTES} bytes")
    report = await run_in_threadpool(ingest, engine, source, body, settings.metrics)
    return report.as_dict()


@router.get("/network/matrix", response_model=MatrixOut,
            responses={200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}})
def get_matrix(
    engine: EngineDep,
    settings: SettingsDep,
    kind: MatrixKind = "throughput",
    window: Window = "1d",
    source: SourceChoice = "consolidated",
    format: Literal["json", "csv", "parquet"] = "json",
    at: Annotated[float | None, Query(ge=0, le=EPOCH_MAX_S, description="End of the "
                                      "window, epoch seconds (default: now).")] = None,
) -> object:
    """The window's values per link: rows source site, columns destination site.

    ``null`` (JSON) or empty (CSV) means unknown: no usable measurement in the
    window, which is not the same as zero.
    """
    matrix = metrics.network_matrix(engine, kind, window, source, settings.metrics, at)
    if format == "csv":
        return Response(matrix.to_csv(), media_type="text/csv")
    if format == "parquet":
        buffer = io.BytesIO()
        matrix.to_parquet(buffer)
        return Response(buffer.getvalue(), media_type="application/vnd.apache.parquet")
    return {"kind": kind, "unit": MATRIX_UNITS[kind], "window": window, "source": source,
            "sources": list(matrix.index), "destinations": list(matrix.columns),
            "values": [[None if math.isnan(v) else v for v in row]
                       for row in matrix.to_numpy().tolist()]}


@router.get("/network/links/{src}/{dst}", response_model=list[LinkPoint])
def get_link_history(
    src: str, dst: str, engine: EngineDep,
    kind: MetricKind = MetricKind.THROUGHPUT,
    days: Annotated[float, Query(gt=0, le=3660)] = 7.0,
    at: Annotated[float | None, Query(ge=0, le=EPOCH_MAX_S, description="End of the "
                                      "history, epoch seconds (default: now).")] = None,
) -> list[dict[str, object]]:
    """One link's history per time bucket and source, oldest first."""
    end = time.time() if at is None else at
    history = metrics.link_history(engine, src, dst, kind, end - days * 86400, end)
    return history.to_dict(orient="records")


@router.get("/network/paths/{src}/{dst}", response_model=PathOut)
def get_widest_path(
    src: str, dst: str, engine: EngineDep, settings: SettingsDep, window: Window = "1d",
    at: Annotated[float | None, Query(ge=0, le=EPOCH_MAX_S, description="End of the "
                                      "window, epoch seconds (default: now).")] = None,
) -> dict[str, object]:
    """The path of consolidated throughput links from ``src`` to ``dst`` whose slowest
    link is the fastest (through the site graph), with the direct link beside it."""
    return graph.widest_path_report(engine, src, dst, window, settings.metrics, at)


@router.get("/network/nws")
def get_nws(engine: EngineDep, settings: SettingsDep) -> dict[str, object]:
    """Our consolidated matrix in the ATLAS NWS document shape (keyed ``SRC:DST``)."""
    return nws.nws_document(engine, settings.metrics)
