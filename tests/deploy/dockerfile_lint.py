#!/usr/bin/python3
"""deploy/Dockerfile's hand-kept lists against what they must cover (ctest DockerfileCopyLists,
label lint; seconds, no engine needed).

  dockerfile_lint.py SOURCE_DIR

1. The build stage COPYs every top-level folder that CMakeLists.txt add_subdirectory()s or
   include()s from, except tests/ and bench/ when the stage turns them off. (Missed before:
   artifacts/, fuzz/ and monitoring/ came to CMakeLists.txt after the Dockerfile was written, and
   `podman build` failed at configure.)
2. Every file the copied folders' CMake code names by ${PROJECT_SOURCE_DIR}/PATH outside those
   folders is COPYed too (simulation/ configure_file()s scripts/plot.py).
3. deploy/Dockerfile.dockerignore allows every path the Dockerfile COPYs from the context.
Then the same checks on broken copies (a COPY line removed, an allow-list line removed), which
must be refused. Prints "N passed, M failed"; exit 0 only when all pass.
"""
import fnmatch
import os
import re
import sys


def instructions(text):
    """Dockerfile instructions as (KEYWORD, argument string), continuation lines joined and
    comment lines dropped, as Docker reads them."""
    out, cur = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        kw, _, rest = cur.partition(" ")
        out.append((kw.upper(), rest.strip()))
        cur = ""
    return out


def stages(text):
    result = []
    for kw, rest in instructions(text):
        if kw == "FROM":
            result.append([])
        elif result:
            result[-1].append((kw, rest))
    return result


def context_copies(stage):
    """Sources of COPY/ADD instructions that read the build context (not --from=)."""
    srcs = []
    for kw, rest in stage:
        if kw not in ("COPY", "ADD"):
            continue
        args = rest.split()
        if any(a.startswith("--from") for a in args):
            continue
        args = [a for a in args if not a.startswith("--")]
        srcs += args[:-1]
    return srcs


def cmake_folders(cmake_text):
    """Top-level folders CMakeLists.txt reads: add_subdirectory(X) and include(X/...)."""
    folders = {}
    for m in re.finditer(r"^\s*(add_subdirectory|include)\(\s*([^\s)]+)", cmake_text, re.M):
        path = m.group(2)
        if m.group(1) == "include" and "/" not in path:
            continue  # include(GoogleTest): a CMake module, not a file here
        folders.setdefault(path.split("/")[0], m.group(0).strip())
    return folders


SOURCE_REF = re.compile(r"\$\{(?:PROJECT_SOURCE_DIR|CMAKE_SOURCE_DIR)\}/([A-Za-z0-9_./-]+)")


def source_refs(src, folders):
    """(file, PATH) for each ${PROJECT_SOURCE_DIR}/PATH in the CMake code of `folders`."""
    refs = []
    for folder in sorted(folders):
        for root, _, files in os.walk(os.path.join(src, folder)):
            for name in files:
                if name == "CMakeLists.txt" or name.endswith(".cmake"):
                    path = os.path.join(root, name)
                    with open(path) as f:
                        for m in SOURCE_REF.finditer(f.read()):
                            refs.append((os.path.relpath(path, src), m.group(1)))
    return refs


def covered(path, copies):
    return any(path == c.rstrip("/") or path.startswith(c.rstrip("/") + "/") for c in copies)


def allowed(path, ignore_text):
    """Docker's .dockerignore semantics, enough for an allow-list: the last matching pattern
    wins; '!' re-includes; a pattern matches a path or any parent folder of it."""
    ok = True
    parts = path.rstrip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for line in ignore_text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = line[1:] if neg else line
        pat = pat.rstrip("/")
        if any(fnmatch.fnmatchcase(p, pat) for p in prefixes):
            ok = neg
    return ok


def check(dockerfile, ignore, cmake, src=None):
    problems = []
    st = stages(dockerfile)
    if len(st) < 2:
        return [f"expected a build and a runtime stage, found {len(st)} stages"]
    build = st[0]
    copied = {s.rstrip("/").split("/")[0] for s in context_copies(build)}
    run_text = " ".join(rest for kw, rest in build if kw == "RUN")
    off = set()
    if "-DFEDKIT_BUILD_TESTS=OFF" in run_text:
        off.add("tests")
    if "-DFEDKIT_BUILD_BENCHMARKS=OFF" in run_text:
        off.add("bench")
    for folder, line in sorted(cmake_folders(cmake).items()):
        if folder not in off and folder not in copied:
            problems.append(f"CMakeLists.txt reads {folder}/ ({line}) but the build stage does "
                            f"not COPY it")
    if src is not None:
        copies = context_copies(build)
        for where, ref in source_refs(src, copied):
            if not covered(ref, copies):
                problems.append(f"{where} reads {ref}, which the build stage does not COPY")
    for stage in st:
        for path in context_copies(stage):
            if not allowed(path, ignore):
                problems.append(f"COPY {path}: excluded by Dockerfile.dockerignore")
    return problems


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "."
    read = lambda p: open(os.path.join(src, p)).read()  # noqa: E731
    dockerfile, ignore = read("deploy/Dockerfile"), read("deploy/Dockerfile.dockerignore")
    cmake = read("CMakeLists.txt")
    passed = failed = 0

    def expect(name, problems, want):
        nonlocal passed, failed
        if want is None:
            good = not problems
        else:
            good = any(want in p for p in problems)
        print(("ok" if good else "FAILED") + f": {name}: {problems or 'no problems'}")
        passed, failed = passed + good, failed + (not good)

    expect("deploy/Dockerfile as committed", check(dockerfile, ignore, cmake, src), None)
    copies = [l for l in dockerfile.splitlines() if re.match(r"COPY (?!--from)\S+/ ", l)]
    if not copies:
        print("FAILED: no COPY FOLDER/ lines to remove")
        failed += 1
    for line in copies:
        folder = line.split()[1].rstrip("/")
        expect(f"without '{line}'", check(dockerfile.replace(line + "\n", ""), ignore, cmake),
               f"reads {folder}/")
    plot = "COPY scripts/plot.py scripts/plot.py"
    if plot in dockerfile:
        expect(f"without '{plot}'", check(dockerfile.replace(plot + "\n", ""), ignore, cmake, src),
               "reads scripts/plot.py")
    allow = [l for l in ignore.splitlines() if l.startswith("!")]
    for line in allow:
        expect(f"dockerignore without '{line}'",
               check(dockerfile, ignore.replace(line + "\n", ""), cmake),
               f"COPY {line[1:]}")
    expect("a new add_subdirectory(newfolder)",
           check(dockerfile, ignore, cmake + "\nadd_subdirectory(newfolder)\n"),
           "reads newfolder/")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
