"""The pilot's queue description and storage list, made from the registry.

Pure functions over the plain dicts ``GridDB.queue_description`` and
``GridDB.ddm_endpoints`` give: :func:`schedconfig` makes a queue's
``/cache/schedconfig/<Q>.all.json`` object, :func:`ddmendpoints` the
``/cache/ddmendpoints.json`` mapping (one entry each by
:func:`ddmendpoint_entry`).

What PanDA Pilot 3 (3.7 and 3.11) reads of them, and so what must be there:

- a storage endpoint's ``arprotocols``, ``{activity: [{"endpoint", "path",
  "flavour", "id"}]}`` in order of preference (``StorageData``;
  ``StagingClient.resolve_protocols`` takes the first of the file's activities
  with protocols: ``read_lan``/``read_wan`` in, ``write_lan``/``write_wan``
  out; ``resolve_protocol`` keeps those whose endpoint starts with a scheme
  the copy tool allows, any for ``mv``; ``require_protocols`` takes the
  first). ``rprotocols[str(id)]["settings"]`` only for object stores.
- a queue's ``astorages``, ``{activity: [endpoint names]}``: where output goes
  (``prepare_destinations``: 3.7 ``pw``, ``w``, logs ``pl`` first; 3.11
  ``write_lan``, ``w``) and which endpoints are local (``prepare_inputddms``:
  ``read_lan``); an output endpoint among the ``read_lan`` ones is written
  by its ``write_lan`` protocols, any other by its ``write_wan`` ones.
- a queue's ``acopytools``, copy tools per activity (3.7: ``pr`` in,
  ``pw``/``pl`` out; 3.11: ``read_lan``, ``write_lan``; both then ``default``,
  then ``copytools``' names), and ``copytools``, ``{name: {"setup": ...}}``.
  With ``mv`` among ``copytools``, ``require_protocols`` goes on without a
  protocol and fails on the first missing one (the IndexError, pilot error
  1137, of empty ``arprotocols``).

Copy tools the queue's record does not name are chosen by the schemes of its
storages' protocols, in their order of preference: ``file`` -> ``mv``,
``root`` -> ``xrdcp``, ``davs``/``https``/``srm``/``gsiftp`` -> ``gfal``,
``s3`` -> ``s3``, ``gs`` -> ``gs`` (names of the pilot's ``copytool``
modules; their ``allowed_schemas``). The queue's ``aprotocols`` (which the
pilot keeps but does not read) lists, per astorages activity, its
endpoints' protocols for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from netbroker.common.enums import PROTOCOL_ACTIVITIES

__all__ = [
    "acopytools",
    "aprotocols",
    "arprotocols",
    "ddmendpoint_entry",
    "ddmendpoints",
    "queue_astorages",
    "rprotocols",
    "schedconfig",
]

Row = Mapping[str, Any]

_SCHEME_COPYTOOLS = {"file": "mv", "root": "xrdcp", "davs": "gfal", "https": "gfal",
                    "srm": "gfal", "gsiftp": "gfal", "s3": "s3", "gs": "gs"}
# Activities of astorages and acopytools that are one another's names in 3.7 and 3.11.
_ALIASES = (("pr", "read_lan"), ("read_lan", "pr"), ("pw", "write_lan"), ("write_lan", "pw"),
            ("pl", "pw"), ("pl", "write_lan"))
_COPYTOOL_KEYS = ("default", "pr", "pw", "pl", "read_lan", "write_lan")


def arprotocols(protocols: Iterable[Row]) -> dict[str, list[dict[str, Any]]]:
    """Per activity, the protocols used for it, first choice first, as the pilot reads them.

    Parameters
    ----------
    protocols : iterable of mapping
        An endpoint's protocol rows (``GridDB.endpoint_protocols``).

    Returns
    -------
    dict
        ``{activity: [{"endpoint", "path", "flavour", "id"}]}``, only activities
        some protocol is used for; ties in priority keep the endpoint's order.

    Examples
    --------
    >>> rows = [{"protocol_id": 1, "position": 0, "url": "file://localhost", "path": "/d",
    ...          "flavour": "POSIX", "read_lan": 1, "read_wan": 0, "write_lan": 1,
    ...          "write_wan": 0, "delete_lan": 0, "delete_wan": 0}]
    >>> arprotocols(rows)["write_lan"]
    [{'endpoint': 'file://localhost', 'path': '/d', 'flavour': 'POSIX', 'id': 1}]
    """
    rows = list(protocols)
    out = {}
    for activity in PROTOCOL_ACTIVITIES:
        ranked = _ranked(rows, activity)
        if ranked:
            out[activity] = [{"endpoint": p["url"], "path": p["path"], "flavour": p["flavour"],
                              "id": p["protocol_id"]} for p in ranked]
    return out


def rprotocols(protocols: Iterable[Row]) -> dict[str, dict[str, Any]]:
    """Every protocol by its id (a string, as CRIC keys them), with its activities.

    >>> rprotocols([{"protocol_id": 7, "url": "root://se:1094", "path": "/a/", "flavour": "XROOTD",
    ...              "read_lan": 2, "read_wan": 1, "write_lan": 0, "write_wan": 0,
    ...              "delete_lan": 0, "delete_wan": 0}])["7"]["activities"]
    [['read_lan', 2], ['read_wan', 1]]
    """
    return {str(p["protocol_id"]): {
        "id": p["protocol_id"], "endpoint": p["url"], "path": p["path"], "flavour": p["flavour"],
        "activities": [[a, p[a]] for a in PROTOCOL_ACTIVITIES if p[a] > 0], "settings": {}}
        for p in protocols}


def aprotocols(protocols: Iterable[Row]) -> dict[str, list[list[Any]]]:
    """Read, write and delete protocols as ``[endpoint, priority, path]`` (CRIC's
    ``aprotocols``), the priority the better of LAN and WAN."""
    rows = list(protocols)
    out: dict[str, list[list[Any]]] = {}
    for short, op in (("r", "read"), ("w", "write"), ("d", "delete")):
        best = sorted((min(v for v in (p[f"{op}_lan"], p[f"{op}_wan"]) if v > 0),
                       p.get("position", 0), p["url"], p["path"])
                      for p in rows if p[f"{op}_lan"] > 0 or p[f"{op}_wan"] > 0)
        if best:
            out[short] = [[url, priority, path] for priority, _, url, path in best]
    return out


def ddmendpoint_entry(endpoint: Row) -> dict[str, Any]:
    """One storage endpoint of ``/cache/ddmendpoints.json``.

    Parameters
    ----------
    endpoint : mapping
        A row of ``GridDB.ddm_endpoints``: ``id, name, endpoint_type, kind,
        active, site, rc_site`` and its ``protocols``.
    """
    protocols = endpoint.get("protocols", [])
    return {"name": endpoint["name"], "id": endpoint["id"], "type": endpoint["endpoint_type"],
            "token": "", "state": "ACTIVE" if endpoint["active"] else "DISABLED",
            "site": endpoint["site"], "rc_site": endpoint.get("rc_site") or endpoint["site"],
            "is_deterministic": True, "is_tape": endpoint["kind"] == "tape",
            "arprotocols": arprotocols(protocols), "rprotocols": rprotocols(protocols),
            "aprotocols": aprotocols(protocols), "resource": {}}


def ddmendpoints(endpoints: Iterable[Row]) -> dict[str, dict[str, Any]]:
    """``/cache/ddmendpoints.json``: every endpoint's entry, keyed by its name. O(e + p)."""
    return {e["name"]: ddmendpoint_entry(e) for e in endpoints}


def queue_astorages(stored: Mapping[str, Sequence[str]], site_endpoints: Sequence[str],
                    protocols: Mapping[str, Sequence[Row]]) -> dict[str, list[str]]:
    """A queue's astorages as both pilot versions look them up.

    The stored ones (CRIC's), else the site's disk endpoints: ``read_lan``
    those with a read protocol, ``write_lan`` those with a write one (all of
    them when none has protocols). Then each activity the other version
    names differently (``pr``/``read_lan``, ``pw``/``write_lan``, ``pl``) is
    filled from its twin.

    >>> queue_astorages({"read_lan": ["A_DATADISK"], "write_lan": ["A_SCRATCHDISK"]}, [], {})
    {'read_lan': ['A_DATADISK'], 'write_lan': ['A_SCRATCHDISK'], 'pr': ['A_DATADISK'], \
'pw': ['A_SCRATCHDISK'], 'pl': ['A_SCRATCHDISK']}
    """
    out = {activity: list(names) for activity, names in stored.items() if names}
    if not out and site_endpoints:
        def using(op: str) -> list[str]:
            return [e for e in site_endpoints if any(
                p[f"{op}_lan"] > 0 or p[f"{op}_wan"] > 0 for p in protocols.get(e, ()))]
        out = {"read_lan": using("read") or list(site_endpoints),
               "write_lan": using("write") or list(site_endpoints)}
    return _with_aliases(out)


def acopytools(astorages: Mapping[str, Sequence[str]], protocols: Mapping[str, Sequence[Row]]
               ) -> dict[str, list[str]]:
    """Copy tools per activity, from the schemes of the queue's storages' protocols.

    Reading: the ``read_lan`` storages' read protocols (LAN first); writing:
    the ``write_lan`` storages' write protocols; ``default`` both. ``mv`` when
    no protocol has a scheme a pilot copy tool takes.
    """
    read = _tools(astorages.get("read_lan", ()), protocols, ("read_lan", "read_wan"))
    write = _tools(astorages.get("write_lan", ()), protocols, ("write_lan", "write_wan"))
    default = list(dict.fromkeys(write + read)) or ["mv"]
    return {"default": default, "pr": read or default, "read_lan": read or default,
            "pw": write or default, "pl": write or default, "write_lan": write or default}


def schedconfig(description: Mapping[str, Any]) -> dict[str, Any]:
    """A queue's description in CRIC's schedconfig shape, as Pilot 3 reads it.

    Parameters
    ----------
    description : mapping
        ``GridDB.queue_description``: ``queue`` (its row, copy tools decoded),
        ``astorages``, ``site_endpoints`` and their ``protocols``.

    Returns
    -------
    dict
        The flat object of ``/cache/schedconfig/<Q>.all.json``: the queue's
        limits (``maxtime`` 0 for no limit), ``astorages`` (:func:`queue_astorages`),
        ``copytools`` and ``acopytools`` (the queue's own, completed for both
        pilot versions; else :func:`acopytools`) and ``aprotocols``.
    """
    queue = description["queue"]
    protocols = description.get("protocols", {})
    storages = queue_astorages(description.get("astorages", {}),
                               description.get("site_endpoints", []), protocols)
    tools, per_activity = _copytools(queue.get("copytools"), queue.get("acopytools"),
                                     storages, protocols)
    return {
        "nickname": queue["name"], "panda_resource": queue["panda_resource"],
        "site": queue["site"], "atlas_site": queue["site"], "cloud": queue["cloud"],
        "state": "ACTIVE", "status": str(queue["status"]), "type": str(queue["queue_type"]),
        "catchall": queue.get("catchall") or "", "environ": "", "cmtconfig": "",
        "appdir": "", "container_type": "", "container_options": "", "copytools": tools,
        "acopytools": per_activity,
        "astorages": storages, "aprotocols": _queue_aprotocols(storages, protocols),
        "acopytools_schemas": {}, "params": {}, "maxwdir": queue["max_disk_mb"],
        "maxrss": queue["max_memory_mb"], "maxtime": queue["max_walltime_s"] or 0,
        "maxinputsize": queue["max_disk_mb"], "timefloor": 0, "corecount": queue["cores"],
        "pledgedcpu": 0, "is_cvmfs": False, "direct_access_lan": False,
        "direct_access_wan": False, "allow_lan": True, "allow_wan": False,
        "use_pcache": False,
    }


def _copytools(given: Mapping[str, Any] | None, per_activity: Mapping[str, Any] | None,
               storages: Mapping[str, Sequence[str]], protocols: Mapping[str, Sequence[Row]]
               ) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """(copytools, acopytools): the queue's own where it has them, completed."""
    if per_activity:
        chosen = {k: list(v) for k, v in per_activity.items() if v}
    elif given:
        chosen = {"default": list(given)}
    else:
        chosen = acopytools(storages, protocols)
    chosen = _with_aliases(chosen)
    if "default" not in chosen:
        first = next((chosen[k] for k in ("pw", "write_lan", "pr", "read_lan") if k in chosen),
                     None) or next(iter(chosen.values()), ["mv"])
        chosen["default"] = list(first)
    for key in _COPYTOOL_KEYS:  # every activity either version asks for, named
        chosen.setdefault(key, list(chosen["default"]))
    names = given or dict.fromkeys(n for k in _COPYTOOL_KEYS for n in chosen.get(k, ()))
    tools = {name: {"setup": "", **(settings or {})} for name, settings in names.items()}
    return tools, chosen


def _queue_aprotocols(storages: Mapping[str, Sequence[str]],
                      protocols: Mapping[str, Sequence[Row]]) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for activity, names in storages.items():
        op = "read" if "read" in activity or activity == "pr" else (
            "write" if "write" in activity or activity in ("pw", "pl", "w") else None)
        if op is None:
            continue
        out[activity] = [{"ddmendpoint": name, "endpoint": p["url"], "path": p["path"],
                          "flavour": p["flavour"], "id": p["protocol_id"]}
                         for name in names for p in _ranked(protocols.get(name, ()), f"{op}_lan")]
    return out


def _with_aliases(by_activity: dict[str, list[str]]) -> dict[str, list[str]]:
    for activity, twin in _ALIASES:
        if activity not in by_activity and by_activity.get(twin):
            by_activity[activity] = list(by_activity[twin])
    return by_activity


def _ranked(protocols: Iterable[Row], activity: str) -> list[Row]:
    """The protocols used for ``activity``, first choice first (ties: endpoint order)."""
    used = [(p[activity], p.get("position", i), i, p) for i, p in enumerate(protocols)
            if p[activity] > 0]
    return [p for *_, p in sorted(used, key=lambda t: t[:3])]


def _tools(names: Iterable[str], protocols: Mapping[str, Sequence[Row]],
           activities: Sequence[str]) -> list[str]:
    """The copy tools for the schemes of these endpoints' protocols, in preference order."""
    tools: dict[str, None] = {}
    for name in names:
        for activity in activities:
            for p in _ranked(protocols.get(name, ()), activity):
                tool = _SCHEME_COPYTOOLS.get(str(p["scheme"]).lower())
                if tool:
                    tools.setdefault(tool)
    return list(tools)
