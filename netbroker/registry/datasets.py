"""Datasets, their files and their replicas at storage endpoints, as records.

A dataset is named like a Rucio DID, ``scope:name``; its files are
attached to it; a replica says the whole dataset sits at one storage
endpoint (an RSE), available to read or still pending (being copied).
These are the parsed, validated records the grid document and PD2P use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from netbroker.common.enums import ReplicaState

__all__ = ["DatasetRecord", "FileRecord", "ReplicaRecord", "did", "endpoint_of_url", "pfn",
           "rucio_path"]


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


class FileRecord(BaseModel):
    """One file of a dataset: logical name, GUID, size in bytes, Adler-32."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=255)
    guid: str = Field(min_length=1, max_length=36)
    bytes: int = Field(ge=0, description="File size in bytes.")
    adler32: str = Field("", pattern=r"^([0-9a-fA-F]{1,8})?$")


class ReplicaRecord(BaseModel):
    """A whole-dataset replica at a storage endpoint (``rse``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    rse: str = Field(min_length=1)
    state: Annotated[ReplicaState, BeforeValidator(_lower)] = ReplicaState.AVAILABLE


class DatasetRecord(BaseModel):
    """A dataset with its files and replicas."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    scope: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=255)
    files: list[FileRecord] = Field(default_factory=list)
    replicas: list[ReplicaRecord] = Field(default_factory=list)

    @property
    def did(self) -> str:
        return did(self.scope, self.name)

    @property
    def bytes(self) -> int:
        """Sum of the file sizes, in bytes."""
        return sum(f.bytes for f in self.files)


def did(scope: str, name: str) -> str:
    """The data identifier ``scope:name``.

    >>> did("mc23_13p6TeV", "mc23_13p6TeV.601229.DAOD_PHYS")
    'mc23_13p6TeV:mc23_13p6TeV.601229.DAOD_PHYS'
    """
    return f"{scope}:{name}"


def rucio_path(scope: str, lfn: str) -> str:
    """Where a file lives under an endpoint: Rucio's deterministic ``hash`` path.

    ``scope/h0h1/h2h3/lfn`` with ``h`` the MD5 of ``scope:lfn`` (user scopes
    ``user.jdoe`` become ``user/jdoe``), so any client finds a file without a
    catalogue lookup.

    >>> rucio_path("data23", "data23.AOD._000001.pool.root.1")
    'data23/85/92/data23.AOD._000001.pool.root.1'
    """
    digest = hashlib.md5(f"{scope}:{lfn}".encode(), usedforsecurity=False).hexdigest()
    top = scope.replace(".", "/") if scope.startswith(("user.", "group.")) else scope
    return f"{top}/{digest[0:2]}/{digest[2:4]}/{lfn}"


def pfn(endpoint_url: str, scope: str, lfn: str) -> str:
    """A file's URL at an endpoint whose base URL is ``endpoint_url``.

    >>> pfn("davs://se.desy.example:443/atlasdatadisk/", "data23", "f.root")
    'davs://se.desy.example:443/atlasdatadisk/data23/e6/58/f.root'
    """
    return f"{endpoint_url.rstrip('/')}/{rucio_path(scope, lfn)}"


def endpoint_of_url(url: str, prefixes: Mapping[str, Iterable[str]]) -> str | None:
    """The endpoint whose storage holds ``url``: the one with the longest of its
    URL prefixes (a protocol's ``scheme://host:port`` and path) that ``url`` starts
    with, compared as paths (a prefix ends at a ``/``). None if none does.

    Parameters
    ----------
    url : str
        Where a file was written (a pilot's SURL).
    prefixes : mapping of str to iterable of str
        Per endpoint name, the URL prefixes of its protocols.

    Examples
    --------
    >>> protocols = {"A_DATADISK": ["file://localhost/data/a/rucio/", "root://se.a:1094//a"],
    ...              "A_SCRATCH": ["file://localhost/data/a/rucio/scratch"]}
    >>> endpoint_of_url("file://localhost/data/a/rucio/user/x/12/34/f.root", protocols)
    'A_DATADISK'
    >>> endpoint_of_url("file://localhost/data/a/rucio/scratch/f.root", protocols)
    'A_SCRATCH'
    >>> endpoint_of_url("file://localhost/data/a/rucio2/f.root", protocols) is None
    True

    Notes
    -----
    O(p) for p prefixes.
    """
    best, best_len = None, -1
    for name, urls in prefixes.items():
        for prefix in urls:
            stem = prefix.rstrip("/")
            if (url == stem or url.startswith(stem + "/")) and len(stem) > best_len:
                best, best_len = name, len(stem)
    return best
