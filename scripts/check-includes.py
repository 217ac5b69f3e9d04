#!/usr/bin/env python3
"""Checks that every module includes only headers of the modules its CMake target links.

Input: the module graph CMake writes at configure time (kr_module_graph.tsv in the build
directory): one line per target under src/, "target<TAB>module<TAB>source dir<TAB>sources<TAB>
link items" (lists separated by ';'). A target may include the headers of its own module and of
the modules of every kr_ target it links, directly or through their PUBLIC links.

Every file of ours a target's sources reach through #include (public headers under
include/kube_router/<module>/, private ones next to the sources) is followed, so a public header
that includes another module's header counts against each target that includes it.
Exit status 1 and one line per violation when a target reaches a module it does not link.
"""
import argparse
import os
import re
import sys

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.MULTILINE)


def read_graph(path):
    targets = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            name, module, source_dir, sources, links = (line.split("\t") + [""] * 5)[:5]
            targets[name] = {
                "module": module,
                "dir": source_dir,
                "sources": [s for s in sources.split(";") if s],
                "links": [l for l in links.split(";") if l],
            }
    return targets


def allowed_modules(name, targets):
    """The target's own module and those of every kr_ target it reaches through its links."""
    seen, stack = set(), [name]
    while stack:
        t = stack.pop()
        if t in seen or t not in targets:
            continue
        seen.add(t)
        stack.extend(targets[t]["links"])
    return {targets[t]["module"] for t in seen}


def module_of(path, root):
    """The module a file of ours belongs to, or None for files outside src/ and include/."""
    rel = os.path.relpath(path, root).split(os.sep)
    if len(rel) >= 3 and rel[0] == "include" and rel[1] == "kube_router":
        return rel[2]
    if len(rel) >= 2 and rel[0] == "src":
        return rel[1]
    return None


def resolve(spec, including_file, root):
    """The file of ours an #include names (quoted: next to the includer first), or None."""
    candidates = [
        os.path.join(os.path.dirname(including_file), spec),
        os.path.join(root, "include", spec),
    ]
    for c in candidates:
        if os.path.isfile(c) and module_of(os.path.realpath(c), root) is not None:
            return os.path.realpath(c)
    return None


def includes_of(path, root, cache):
    if path not in cache:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""
        found = []
        for spec in INCLUDE_RE.findall(text):
            target = resolve(spec, path, root)
            if target is not None:
                found.append((spec, target))
        cache[path] = found
    return cache[path]


def check(graph_path, root):
    root = os.path.realpath(root)
    targets = read_graph(graph_path)
    cache = {}
    violations = []
    for name in sorted(targets):
        t = targets[name]
        allowed = allowed_modules(name, targets)
        pending = [os.path.realpath(os.path.join(t["dir"], s)) for s in t["sources"]]
        pending = [p for p in pending if module_of(p, root) is not None]
        visited = set()
        while pending:
            path = pending.pop()
            if path in visited:
                continue
            visited.add(path)
            for spec, target in includes_of(path, root, cache):
                module = module_of(target, root)
                if module not in allowed:
                    violations.append(
                        f"{os.path.relpath(path, root)}: #include \"{spec}\" (module {module}) "
                        f"but {name} links only modules {', '.join(sorted(allowed))}")
                pending.append(target)
    return sorted(set(violations)), len(targets)


def self_test():
    """The check on a tiny tree: clean, then with one include across an unlinked boundary."""
    import tempfile

    def write(path, text):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    with tempfile.TemporaryDirectory() as root:
        write(f"{root}/include/kube_router/a/a.h", "#pragma once\n#include <vector>\n")
        write(f"{root}/include/kube_router/b/b.h", '#pragma once\n#include "kube_router/a/a.h"\n')
        write(f"{root}/include/kube_router/c/c.h", "#pragma once\n")
        write(f"{root}/src/a/a.cc", '#include "kube_router/a/a.h"\n')
        write(f"{root}/src/b/private.h", '#pragma once\n#include "kube_router/b/b.h"\n')
        write(f"{root}/src/b/b.cc", '#include "private.h"\n')
        graph = f"{root}/graph.tsv"
        write(graph, f"kr_a\ta\t{root}/src/a\ta.cc\t\n"
                     f"kr_b\tb\t{root}/src/b\tb.cc\tkr_a;Threads::Threads\n")
        clean, _ = check(graph, root)
        # b reaches c through its private header and c's public header: c is not linked.
        write(f"{root}/include/kube_router/b/b.h",
              '#pragma once\n#include "kube_router/a/a.h"\n#include "kube_router/c/c.h"\n')
        transitive, _ = check(graph, root)
        # a includes b: b links a, not the other way round.
        write(f"{root}/src/a/a.cc", '#include "kube_router/a/a.h"\n#include <kube_router/b/b.h>\n')
        reverse, _ = check(graph, root)
    failures = []
    if clean:
        failures.append(f"a clean tree reported {clean}")
    if len(transitive) != 1 or "module c" not in transitive[0]:
        failures.append(f"an include of an unlinked module through two headers: {transitive}")
    if not any("kr_a links only modules a" in v for v in reverse):
        failures.append(f"an include against the link direction: {reverse}")
    for f in failures:
        print(f"check-includes self-test: {f}", file=sys.stderr)
    if not failures:
        print("check-includes self-test: violations found, clean tree passes")
    return 1 if failures else 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("graph", help="kr_module_graph.tsv from the build directory")
    parser.add_argument("--root", default=os.path.join(os.path.dirname(__file__), ".."),
                        help="source tree (default: this repository)")
    args = parser.parse_args()
    violations, count = check(args.graph, args.root)
    if count == 0:
        print("check-includes: the module graph lists no targets", file=sys.stderr)
        return 1
    for v in violations:
        print(f"check-includes: {v}", file=sys.stderr)
    if violations:
        print(f"check-includes: {len(violations)} include(s) cross a module boundary the build "
              "does not link", file=sys.stderr)
        return 1
    print(f"check-includes: {count} targets include only modules they link")
    return 0


if __name__ == "__main__":
    sys.exit(main())
