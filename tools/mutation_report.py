"""Mutation score per package, and every surviving mutant, from mutmut's results in mutants/.

Run from the repository root after `mutmut run` (`make mutation` does both):

    python tools/mutation_report.py [--survivors FILE]

A package is a folder directly under balloonsim/ or a module beside them. The score counts a
timeout as a kill, as mutmut does, over the mutants that were run.
"""

from __future__ import annotations

import argparse
import ast
from collections import Counter, defaultdict
from pathlib import Path

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files
from mutmut.utils.format_utils import orig_function_and_class_names_from_key

COLUMNS = ("mutants", "killed", "timeout", "survived", "no tests", "not run", "other")
COLUMN_OF_STATUS = {s: s for s in COLUMNS} | {"not checked": "not run"}  # anything else (suspicious, segfault): other
NOT_KILLED = ("survived", "no tests")  # "no tests": no test reaches the mutated function


def package_of(path: Path) -> str:
    """balloonsim/results/summary.py -> balloonsim/results/; balloonsim/cli.py stays itself."""
    return f"{path.parts[0]}/{path.parts[1]}/" if len(path.parts) > 2 else str(path)


def statuses_by_file() -> dict[Path, dict[str, str]]:
    """{source file: {mutant name: status}} for every file mutmut mutates."""
    by_file = {}
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        by_file[path] = {name: status_by_exit_code[code] for name, code in data.exit_code_by_key.items()}
    return by_file


def count_row(statuses: list[str]) -> Counter:
    counts = Counter(COLUMN_OF_STATUS.get(s, "other") for s in statuses)
    counts["mutants"] = len(statuses)
    return counts


def score_text(counts: Counter) -> str:
    run = counts["mutants"] - counts["not run"]
    return f"{100 * (counts['killed'] + counts['timeout']) / run:.1f} %" if run else "-"


def print_table(by_file: dict[Path, dict[str, str]]) -> None:
    statuses_by_package = defaultdict(list)
    for path, statuses in by_file.items():
        statuses_by_package[package_of(path)] += statuses.values()
    rows = {package: count_row(statuses_by_package[package]) for package in sorted(statuses_by_package)}
    rows["all"] = count_row([s for statuses in statuses_by_package.values() for s in statuses])
    width = max(len(package) for package in rows)
    print(f"{'package':<{width}}" + "".join(f"{c:>10}" for c in COLUMNS) + f"{'score':>10}")
    for package, counts in rows.items():
        print(f"{package:<{width}}" + "".join(f"{counts[c]:>10}" for c in COLUMNS) + f"{score_text(counts):>10}")


def function_spans(source: str) -> dict[str, tuple[int, int]]:
    """{"func" or "Class.method": (first line, last line)} for the functions mutmut mutates."""
    spans = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    spans[f"{node.name}.{item.name}"] = (item.lineno, item.end_lineno)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            spans[node.name] = (node.lineno, node.end_lineno)
    return spans


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    """The removed and the added lines of a unified diff, stripped."""
    lines = [line for line in diff.splitlines() if not line.startswith(("---", "+++"))]
    return [x[1:].strip() for x in lines if x.startswith("-")], [x[1:].strip() for x in lines if x.startswith("+")]


def survivor_line(path: Path, source_lines: list[str], spans: dict, name: str, status: str) -> tuple[int, str]:
    """(line in the source, one line that says where and what the mutant changed)."""
    function, class_name = orig_function_and_class_names_from_key(name)
    qualified = f"{class_name}.{function}" if class_name else function
    first, last = spans[qualified]
    removed, added = changed_lines(get_diff_for_mutant(name, path=path))
    body = [line.strip() for line in source_lines[first - 1 : last]]
    line = first + body.index(removed[0]) if removed and removed[0] in body else first
    change = f"`{' / '.join(removed)}` -> `{' / '.join(added)}`"
    return line, f"{path}:{line}  in {qualified}: {change}  [{status}]  ({name})"


def survivors_text(by_file: dict[Path, dict[str, str]]) -> str:
    """Every mutant no test killed, by package, then file and line (so by function)."""
    out = []
    for package in sorted({package_of(path) for path in by_file}):
        found = []
        for path in sorted(p for p in by_file if package_of(p) == package):
            source = path.read_text()
            spans = function_spans(source)
            for name, status in by_file[path].items():
                if status in NOT_KILLED:
                    line, text = survivor_line(path, source.splitlines(), spans, name, status)
                    found.append((str(path), line, text))
        out.append(f"{package}: {len(found)} not killed")
        out += [f"  {text}" for *_, text in sorted(found)]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survivors", type=Path, metavar="FILE", help="write every mutant no test killed to FILE")
    args = parser.parse_args()
    by_file = statuses_by_file()
    print_table(by_file)
    if args.survivors:
        args.survivors.write_text(survivors_text(by_file))
        print(f"surviving mutants: {args.survivors}")


if __name__ == "__main__":
    main()
