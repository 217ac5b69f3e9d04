#!/usr/bin/env python3
"""Checks that every module includes only headers of the modules its CMake target links.

Input: the module graph CMake writes at configure time (kr_module_graph.tsv in the build
directory): one line per target under src/, "target<TAB>module<TAB>source dir<TAB>sources<TAB>
link items" (lists separated by ';').

Every file of ours a target's sources reach through #include (public headers under
include/kube_router/<module>/, private ones next to the sources) is followed, so a public header
that includes another module's header counts against each target that includes it.

A module may have several libraries (k8s: the object model kr_k8s_model and the API client
kr_k8s; netlink: the role interfaces and the libnl adapters), so the check is per library, not
per module: a target may include a header only if it is, or links (directly or through PUBLIC
links), a library the header belongs to. A header belongs to the library of its module that
compiles the source of the same name (k8s/store.h: the one with src/k8s/store.cc); one without
such a source to the libraries of its module whose sources reach it; one that none reaches, to
all of them. A controller that links
kr_k8s_model therefore cannot include the API client's headers, nor a planner the controller's.
Exit status 1 and one line per violation.
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


def linked_targets(name, targets):
    """The target itself and every kr_ target it reaches through its links."""
    seen, stack = set(), [name]
    while stack:
        t = stack.pop()
        if t in seen or t not in targets:
            continue
        seen.add(t)
        stack.extend(targets[t]["links"])
    return seen


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


def sources_of(t, root):
    paths = [os.path.realpath(os.path.join(t["dir"], s)) for s in t["sources"]]
    return [p for p in paths if module_of(p, root) is not None]


def reached_files(t, root, cache):
    """(file, #include spec, included file) for every include the target's sources reach."""
    edges, visited, pending = [], set(), sources_of(t, root)
    while pending:
        path = pending.pop()
        if path in visited:
            continue
        visited.add(path)
        for spec, target in includes_of(path, root, cache):
            edges.append((path, spec, target))
            pending.append(target)
    return visited, edges


def stem_key(path, root):
    """(module, file name without extension): store.h and store.cc of k8s share one."""
    return module_of(path, root), os.path.splitext(os.path.basename(path))[0]


def check(graph_path, root):
    root = os.path.realpath(root)
    targets = read_graph(graph_path)
    cache = {}
    reach = {name: reached_files(t, root, cache) for name, t in targets.items()}
    # A header's libraries: the one compiling the source of the same name, else those of its
    # module whose sources reach it.
    compiled, reached = {}, {}
    for name, t in targets.items():
        for path in sources_of(t, root):
            compiled.setdefault(stem_key(path, root), set()).add(name)
        for path in reach[name][0]:
            if module_of(path, root) == t["module"]:
                reached.setdefault(path, set()).add(name)
    owners = {}
    for path in reached:
        same_name = compiled.get(stem_key(path, root), set())
        owners[path] = same_name or reached[path]
    by_module = {}
    for name, t in targets.items():
        by_module.setdefault(t["module"], set()).add(name)
    violations = []
    for name in sorted(targets):
        linked = linked_targets(name, targets)
        for path, spec, target in reach[name][1]:
            module = module_of(target, root)
            owning = owners.get(target) or by_module.get(module, set())
            if owning & linked:
                continue
            linked_here = sorted(t for t in linked if targets[t]["module"] == module)
            violations.append(
                f"{os.path.relpath(path, root)}: #include \"{spec}\" (module {module}, "
                f"{', '.join(sorted(owning)) or 'no library'}) but {name} links "
                + (f"only {', '.join(linked_here)} of it" if linked_here else "nothing of it"))
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
        # One module, two libraries: p links only the model, so the client's header is out of
        # bounds for it, and so it is for the model itself (client.h goes with client.cc).
        write(f"{root}/include/kube_router/k/model.h", "#pragma once\n")
        write(f"{root}/include/kube_router/k/client.h",
              '#pragma once\n#include "kube_router/k/model.h"\n')
        write(f"{root}/src/k/model.cc", '#include "kube_router/k/model.h"\n')
        write(f"{root}/src/k/client.cc", '#include "kube_router/k/client.h"\n')
        write(f"{root}/src/p/p.cc", '#include "kube_router/k/model.h"\n')
        write(graph, f"kr_k_model\tk\t{root}/src/k\tmodel.cc\t\n"
                     f"kr_k_client\tk\t{root}/src/k\tclient.cc\tkr_k_model\n"
                     f"kr_p\tp\t{root}/src/p\tp.cc\tkr_k_model\n")
        split_clean, _ = check(graph, root)
        write(f"{root}/src/p/p.cc", '#include "kube_router/k/client.h"\n')
        split_client, _ = check(graph, root)
        write(f"{root}/src/p/p.cc", '#include "kube_router/k/model.h"\n')
        write(f"{root}/src/k/model.cc",
              '#include "kube_router/k/model.h"\n#include "kube_router/k/client.h"\n')
        split_inside, _ = check(graph, root)
    failures = []
    if clean:
        failures.append(f"a clean tree reported {clean}")
    if len(transitive) != 1 or "module c" not in transitive[0]:
        failures.append(f"an include of an unlinked module through two headers: {transitive}")
    if not any(v.startswith("src/a/a.cc") and "kr_a links nothing of it" in v for v in reverse):
        failures.append(f"an include against the link direction: {reverse}")
    if split_clean:
        failures.append(f"the model's header from a library linking the model: {split_clean}")
    if split_client != ['src/p/p.cc: #include "kube_router/k/client.h" (module k, kr_k_client) '
                        'but kr_p links only kr_k_model of it']:
        failures.append(f"the client's header from a library linking the model: {split_client}")
    if len(split_inside) != 1 or "kr_k_model links only kr_k_model" not in split_inside[0]:
        failures.append(f"the client's header from the model's own source: {split_inside}")
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
