"""Import graph of the house by top-level folder at two git revisions: edges with counts, and imports running up.

Run from the repository root: python docs/house_graph.py 97f1329 HEAD (imports inside functions count too;
string references such as INSTALLED_APPS or "config.settings" do not).
"""

import ast
import subprocess
import sys
from collections import Counter

ORDER = ["config", "ai", "billing", "tenants", "core"]  # the import-linter layers, top to bottom
RANK = {name: i for i, name in enumerate(ORDER)}
# Before the reorganisation core/ held the wiring too; these are the parts that moved to config/.
WIRING = ("core.project", "core.settings", "core.management", "core.admin")


def git(*args: str) -> str:
    # git is the developer's own, on PATH; the arguments are revisions and paths of this repository.
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout  # noqa: S603, S607


def folder(module: str, *, wiring_as_config: bool) -> str:
    if wiring_as_config and any(module == w or module.startswith(w + ".") for w in WIRING):
        return "config"
    return module.split(".")[0]


def graph(rev: str, *, wiring_as_config: bool = False) -> Counter[tuple[str, str]]:
    edges: Counter[tuple[str, str]] = Counter()
    paths = [p for p in git("ls-tree", "-r", "--name-only", rev).split() if p.endswith(".py")]
    for path in (p for p in paths if p.split("/")[0] in RANK):
        here = folder(path[:-3].replace("/", "."), wiring_as_config=wiring_as_config)
        for node in ast.walk(ast.parse(git("show", f"{rev}:{path}"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                there = folder(name, wiring_as_config=wiring_as_config)
                if there in RANK and there != here:
                    edges[here, there] += 1
    return edges


def show(title: str, rev: str, edges: Counter[tuple[str, str]]) -> str:
    lines = [f"{title} ({rev})", ""]
    up = 0
    for (a, b), count in sorted(edges.items(), key=lambda edge: (RANK[edge[0][0]], RANK[edge[0][1]])):
        direction = "down" if RANK[a] < RANK[b] else "UP"
        up += count if direction == "UP" else 0
        lines.append(f"  {a:8} -> {b:8} {count:4}  {direction}")
    lines += ["", f"  imports between folders: {sum(edges.values())}; running up against {' > '.join(ORDER)}: {up}"]
    return "\n".join(lines)


if __name__ == "__main__":
    before, after = sys.argv[1], sys.argv[2]
    print(show("Before, by folder", before, graph(before)))
    print()
    title = "Before, with core's wiring (project, settings, management, admin) counted as config"
    print(show(title, before, graph(before, wiring_as_config=True)))
    print()
    print(show("After, by folder", after, graph(after)))
