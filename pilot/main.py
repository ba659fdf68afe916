"""``netbroker-pilot``: the worker-node pilot's command line.

``netbroker-pilot check`` measures the node and tells whether it can take a
job of the given size (exit status 0) or not (1, with the reasons).
``netbroker-pilot run --server URL --queue Q`` takes jobs from the
dispatcher one after another: checks the node, gets a job, prepares its
directory (downloading an http(s) transformation), runs the payload with
heartbeats, reports the outcome and removes the directory. SIGTERM or
SIGINT kill the payload and report it failed before the pilot exits.
``netbroker-pilot factory --server URL --queues Q1,Q2`` keeps as many local
pilots running as the dispatcher's pilot demand asks for.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from pilot import __version__
from pilot.node import check_node, read_node

__all__ = ["main", "run"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netbroker-pilot",
                                     description="The netbroker worker-node pilot.")
    parser.add_argument("--version", action="version", version=f"netbroker-pilot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="Check the worker node before taking a job.")
    check.add_argument("--workdir", type=Path, default=Path.cwd(),
                       help="Where the payload would run (default: here).")
    check.add_argument("--min-disk-mb", type=int, default=0, help="Scratch space needed, MB.")
    check.add_argument("--min-memory-mb", type=int, default=0, help="Memory needed, MB.")
    check.add_argument("--min-cores", type=int, default=1, help="Cores needed.")
    check.add_argument("--json", action="store_true", help="Print the report as JSON.")
    run = sub.add_parser("run", help="Take and run jobs from a dispatcher.")
    run.add_argument("--server", required=True, help="netbroker URL, e.g. http://host:25080")
    run.add_argument("--queue", required=True, help="The compute queue this pilot serves.")
    run.add_argument("--max-jobs", type=int, default=1, help="Jobs to run before exiting.")
    run.add_argument("--workdir", type=Path, default=Path.cwd(), help="Where jobs run.")
    run.add_argument("--heartbeat-s", type=float, default=60.0, help="Heartbeat period, s.")
    run.add_argument("--label", default="managed", help="prodSourceLabel of jobs to take.")
    run.add_argument("--pilot-id", default="", help="Name reported to the server.")
    run.add_argument("--token", default=None,
                     help="Bearer token of role pilot (default: $NETBROKER_TOKEN).")
    factory = sub.add_parser("factory", help="Keep the pilots the dispatcher asks for running.")
    factory.add_argument("--server", required=True, help="netbroker URL.")
    factory.add_argument("--queues", required=True, help="Comma-separated queues to serve.")
    factory.add_argument("--workdir", type=Path, default=Path.cwd(), help="Where pilots run.")
    factory.add_argument("--max-pilots", type=int, default=8, help="Pilots alive at most.")
    factory.add_argument("--cycle-s", type=float, default=10.0, help="Seconds between rounds.")
    factory.add_argument("--heartbeat-s", type=float, default=60.0, help="Pilots' heartbeat, s.")
    factory.add_argument("--label", default="managed", help="prodSourceLabel of jobs to take.")
    factory.add_argument("--duration-s", type=float, default=0.0,
                         help="Stop after this long (0: until signalled).")
    factory.add_argument("--token", default=None,
                         help="Bearer token for its pilots (default: $NETBROKER_TOKEN).")
    factory.add_argument("--until-idle", action="store_true",
                         help="Stop when no queue wants pilots and none is alive.")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; a refusal by the server or a server out of reach ends it with one
    line saying why (the server's own reason) and exit status 1."""
    args = _parser().parse_args(argv)
    if args.command in ("run", "factory"):
        try:  # where jobs run: made if missing, as a batch system's scratch would be
            args.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"netbroker-pilot: cannot use workdir {args.workdir}: {exc.strerror}",
                  file=sys.stderr)
            return 2
        import requests

        from pilot.client import ServerRefused

        try:
            if args.command == "run":
                from pilot.runner import run_pilot

                return run_pilot(args)
            from pilot.factory import run_factory

            return run_factory(args)
        except ServerRefused as exc:
            print(f"netbroker-pilot: {args.server} refused ({exc.status}): {exc.reason}",
                  file=sys.stderr)
        except requests.ConnectionError as exc:
            print(f"netbroker-pilot: cannot reach {args.server}: {_why(exc)}", file=sys.stderr)
        except requests.Timeout:
            print(f"netbroker-pilot: {args.server} did not answer in time", file=sys.stderr)
        return 1
    if not args.workdir.is_dir():
        print(f"netbroker-pilot: workdir {args.workdir} is not a directory", file=sys.stderr)
        return 2
    report = read_node(args.workdir)
    problems = check_node(report, args.min_disk_mb, args.min_memory_mb, args.min_cores)
    if args.json:
        print(json.dumps({"node": report.as_dict(), "ok": not problems, "problems": problems}))
    else:
        for key, value in report.as_dict().items():
            print(f"{key:>16}: {value}")
        print("node ok" if not problems else "node NOT ok:\n  " + "\n  ".join(problems))
    return 0 if not problems else 1


def _why(exc: Exception) -> str:
    """The innermost reason of a connection error.

    >>> _why(OSError("Max retries (Caused by NewConnectionError('x: [Errno 111] "
    ...              "Connection refused'))"))
    '[Errno 111] Connection refused'
    """
    found = re.search(r"\[Errno -?\d+\] '?([^'\")]+)", str(exc))
    if found:
        return found.group(0).replace("'", "").strip()
    return " ".join(str(exc).split())[:200]


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
