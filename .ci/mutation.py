"""Mutation testing of the policy modules: run mutmut, read its results, judge the survivors.

``make mutation`` (``python .ci/mutation.py``) mutates every function in
:data:`SCOPE` (the decisions: brokerage, clouds, priorities, PD2P,
rebrokerage, the job definition of tasks, the consolidation rule) and runs,
for each mutant, the tests that call the function (mutmut's own selection,
``[tool.mutmut]`` in pyproject.toml). A mutant no test kills is a
*survivor*; ``docs/mutation.md`` names every survivor accepted as
equivalent, as a ``diff`` block whose first line is ``# <file>: <function>``
followed by the removed and added lines, under a paragraph saying why. The
run fails (exit 1) on a survivor not named there, or on a mutant no test
covers.

``--only FILE`` keeps the functions of one file of the scope: a whole run
takes hours on two cores, so it is made a file at a time, and ``--record``
writes that file's row into ``docs/mutation.md``'s summary with the commit
it ran at. ``--since REF`` mutates only the functions whose code differs
between ``REF`` and the working tree; ``--since recorded`` (CI) compares
each file with its own recorded commit, so a change is checked in minutes,
and leaves out (saying so) the files never recorded, unless ``--whole``.
``--max-children`` bounds the workers (default 2).
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "mutation.md"

# Per file, the functions (``name`` or ``Class.method``) mutated: all of them but
# ``exclude``, or only ``include``. Outside: reading for people, the DDM feed's
# plumbing, examples.
SCOPE: dict[str, dict[str, list[str]]] = {
    "netbroker/workload/brokerage.py": {"exclude": ["_tiny_view"]},
    "netbroker/clouds/membership.py": {"exclude": ["show_membership", "history"]},
    "netbroker/workload/priority.py": {"exclude": ["list_boosts", "remove_boost"]},
    "netbroker/db/priority.py": {"include": ["PriorityDB.boosts", "PriorityDB.cpu_hours_by_user",
                                             "PriorityDB.waiting_jobs",
                                             "PriorityDB.set_priorities"]},
    "netbroker/placement/pd2p.py": {"include": ["choose_target", "run_cycle", "_throughput",
                                                "_excluded", "cleanup_proposals", "mark_done"]},
    "netbroker/db/pd2p.py": {"include": [
        "Pd2pDB.popularity", "Pd2pDB.waiting_jobs", "Pd2pDB.datasets", "Pd2pDB.replicas_of",
        "Pd2pDB.endpoints", "Pd2pDB.free_slots_by_site", "Pd2pDB.decided",
        "Pd2pDB.failed_targets", "Pd2pDB.reserved_bytes", "Pd2pDB.bytes_sent_by_site",
        "Pd2pDB.decisions_since", "Pd2pDB.expire", "Pd2pDB.pd2p_replicas",
        "Pd2pDB.add_replica", "Pd2pDB.use_space"]},
    "netbroker/workload/rebrokerage.py": {},
    "netbroker/workload/tasks.py": {"include": ["task_needs", "_task_jobs", "_task_files",
                                                "_template_filler", "_seed"]},
    "netbroker/network/metrics.py": {"include": ["window_start_s", "_link_frame", "consolidate",
                                                 "_consolidate_links", "window_mean",
                                                 "choose_sources", "tier1_links"]},
}

KILLED = {"killed", "timeout", "caught by type check", "segfault"}


def functions_of(source: str) -> dict[str, str]:
    """Every top-level function and method of a module: qualified name -> its code
    (``ast.dump`` without positions, so a function that only moved is unchanged)."""
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out[node.name] = ast.dump(node)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    out[f"{node.name}.{item.name}"] = ast.dump(item)
    return out


def in_scope(path: str, name: str) -> bool:
    rule = SCOPE[path]
    if "include" in rule:
        return name in rule["include"]
    return name not in rule.get("exclude", [])


def mangled(path: str, name: str) -> str:
    """mutmut's name prefix of a function's mutants: ``pkg.mod.x_f`` or ``pkg.mod.xǁCǁm``."""
    module = path.removesuffix(".py").replace("/", ".")
    if "." in name:
        cls, method = name.split(".")
        return f"{module}.xǁ{cls}ǁ{method}"
    return f"{module}.x_{name}"


def scoped_functions(since: str | dict[str, str | None] | None) -> list[tuple[str, str]]:
    """(file, function) in scope; with ``since`` (a commit, or one per file where None
    means every function of that file), only those changed since."""
    chosen = []
    for path in SCOPE:
        ref = since.get(path) if isinstance(since, dict) else since
        now = functions_of((ROOT / path).read_text())
        before: dict[str, str] = {}
        if ref is not None:
            old = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=ROOT,
                                 capture_output=True, text=True, check=False)
            before = functions_of(old.stdout) if old.returncode == 0 else {}
        for name, code in now.items():
            if in_scope(path, name) and (ref is None or before.get(name) != code):
                chosen.append((path, name))
    return chosen


def run_mutmut(patterns: list[str], max_children: int) -> int:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children),
           *patterns]
    with (ROOT / "mutants-run.log").open("w") as log:
        return subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                              check=False).returncode


def results(patterns: list[str]) -> dict[str, tuple[str, str]]:
    """Mutant name -> (status, file) for the mutants matching the patterns."""
    sys.path.insert(0, str(ROOT))
    from mutmut.stats import status_by_exit_code

    out = {}
    for path in SCOPE:
        meta = ROOT / "mutants" / f"{path}.meta"
        if not meta.exists():
            continue
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if any(fnmatch.fnmatchcase(name, p) for p in patterns):
                out[name] = (status_by_exit_code[code], path)
    return out


def mutation_key(diff: str, path: str, function: str) -> tuple[str, str, tuple[str, ...]]:
    """A survivor as the report names it: file, function and its changed lines, stripped
    (mutant numbers change with every edit of a function; the mutation does not)."""
    lines = tuple(line[0] + line[1:].strip() for line in diff.splitlines()
                  if line[:1] in ("+", "-") and not line.startswith(("---", "+++")))
    return path, function, lines


def explained() -> dict[tuple[str, str, tuple[str, ...]], str]:
    """The survivors docs/mutation.md accepts, each with the heading it is under."""
    if not REPORT.exists():
        return {}
    out, heading = {}, ""
    for block in re.split(r"^```", REPORT.read_text(), flags=re.M):
        if block.startswith("diff\n"):
            lines = block.removeprefix("diff\n").strip().splitlines()
            head = lines[0].removeprefix("#").strip()
            path, _, function = head.partition(": ")
            out[mutation_key("\n".join(lines[1:]), path, function)] = heading
        else:
            titles = re.findall(r"^#+ (.+)$", block, flags=re.M)
            heading = titles[-1] if titles else heading
    return out


def function_of(name: str) -> str:
    """``netbroker.db.pd2p.xǁPd2pDBǁdecided__mutmut_3`` -> ``Pd2pDB.decided``."""
    last = name.rpartition(".")[2].rsplit("__mutmut_", 1)[0]
    return last.removeprefix("x_") if last.startswith("x_") else ".".join(
        last.removeprefix("xǁ").split("ǁ"))


def judge(found: dict[str, tuple[str, str]]) -> tuple[Counter[str], list[str], list[str]]:
    """Counts per status, the unexplained survivors (as diff blocks) and the uncovered."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    accepted = explained()
    counts: Counter[str] = Counter()
    unexplained, uncovered = [], []
    for name, (status, path) in sorted(found.items()):
        counts[status] += 1
        if status in KILLED:
            continue
        if status == "survived":
            diff = get_diff_for_mutant(name, path=path)
            key = mutation_key(diff, path, function_of(name))
            if key in accepted:
                counts["equivalent"] += 1
                continue
            body = "\n".join(key[2])
            unexplained.append(f"```diff\n# {path}: {key[1]}\n{body}\n```  ({name})")
        else:
            uncovered.append(f"{name}: {status}")
    return counts, unexplained, uncovered


SUMMARY_HEAD = ["| file | run at commit | minutes | mutants | killed | survived (equivalent) |",
                "|---|---|---:|---:|---:|---:|"]


def record(by_file: dict[str, Counter[str]], minutes: float) -> None:
    """Write the rows of the files this run mutated whole into the report's summary
    (between its markers), each with the commit it ran at; other files' rows stay."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    rows = {path: row for path, row in summary_rows().items() if path not in by_file}
    for path, c in by_file.items():
        rows[path] = (f"| `{path}` | `{commit}` | {minutes:.0f} | "
                      f"{sum(v for k, v in c.items() if k != 'equivalent')} | "
                      f"{sum(c[k] for k in KILLED)} | {c['survived']} ({c['equivalent']}) |")
    table = [*SUMMARY_HEAD, *(rows[p] for p in SCOPE if p in rows)]
    text = REPORT.read_text()
    text = re.sub(r"(<!-- summary -->\n).*?(\n<!-- /summary -->)",
                  lambda m: m.group(1) + "\n".join(table) + m.group(2), text, flags=re.S)
    REPORT.write_text(text)


def summary_rows() -> dict[str, str]:
    """The report's summary rows by file."""
    if not REPORT.exists():
        return {}
    found = re.search(r"<!-- summary -->\n(.*?)\n<!-- /summary -->", REPORT.read_text(), re.S)
    rows = found.group(1).splitlines() if found else []
    return {m.group(1): row for row in rows if (m := re.match(r"\| `([^`]+)` \|", row))}


def recorded_commits() -> dict[str, str | None]:
    """Per file of the scope, the commit of its last recorded whole run (None: never)."""
    rows = summary_rows()
    out: dict[str, str | None] = {}
    for path in SCOPE:
        found = re.match(r"\| `[^`]+` \| `([0-9a-f]{40})`", rows.get(path, ""))
        out[path] = found.group(1) if found else None
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--since", help="only the functions changed since this commit "
                        "('recorded': the commit of the report's last full run)")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--only", action="append", metavar="FILE",
                        help="only the functions of this file of the scope (repeatable)")
    parser.add_argument("--record", action="store_true",
                        help="write this run's rows into docs/mutation.md's summary (a run "
                        "of whole files: not with --since)")
    parser.add_argument("--whole", action="store_true",
                        help="with --since recorded, also mutate whole the files never "
                        "recorded")
    parser.add_argument("--no-run", action="store_true", help="judge the last run's results")
    args = parser.parse_args()
    since: str | dict[str, str | None] | None = args.since
    if args.since == "recorded":
        since = recorded_commits()
        never = [p for p, c in since.items() if c is None and (not args.only or p in args.only)]
        if never and not args.whole:
            # A whole file's run takes hours on two cores: CI checks what was recorded.
            print("mutation: no recorded run yet (left out; make mutation MUTATION_ARGS="
                  "'--only FILE --record' records one): " + ", ".join(never))
            since = {p: c for p, c in since.items() if c is not None}
            args.only = [p for p in (args.only or SCOPE) if p in since]
            if not args.only:
                return 0
    chosen = [(path, name) for path, name in scoped_functions(since)
              if not args.only or path in args.only]
    what = ("" if not since else f" changed since {since[:12]}" if isinstance(since, str)
            else " changed since their recorded runs")
    if not chosen:
        print(f"mutation: no policy function{what}; nothing to mutate")
        return 0
    patterns = [f"{mangled(path, name)}__mutmut_*" for path, name in chosen]
    print(f"mutation: {len(chosen)} functions{what}: "
          + ", ".join(name for _, name in chosen[:12]) + (" ..." if len(chosen) > 12 else ""))
    started = time.monotonic()
    if not args.no_run:
        code = run_mutmut(patterns, args.max_children)
        if code != 0:
            print(f"mutation: mutmut exited {code}; see mutants-run.log")
            print((ROOT / "mutants-run.log").read_text()[-3000:])
            return 1
    seconds = time.monotonic() - started
    found = results(patterns)
    counts, unexplained, uncovered = judge(found)
    if args.record:
        if args.since:
            print("mutation: --record takes a run of whole files, not --since")
            return 1
        record({path: judge({n: v for n, v in found.items() if v[1] == path})[0]
                for path in sorted({v[1] for v in found.values()})}, seconds / 60)
    total = sum(v for k, v in counts.items() if k != "equivalent")
    print(f"mutation: {total} mutants in {seconds:.0f} s: "
          + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    for item in uncovered:
        print(f"  not covered by any test: {item}")
    for block in unexplained:
        print(f"  survivor not in docs/mutation.md:\n{block}")
    return 1 if unexplained or uncovered else 0


if __name__ == "__main__":
    sys.exit(main())
