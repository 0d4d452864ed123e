#!/usr/bin/env python3
"""Clang's thread-safety analysis (-Wthread-safety, errors) over FedKit's own sources.

Runs clang++-14 -fsyntax-only on every translation unit of the given build's compile_commands.json
under the folders below, except those compiled against LibTorch: clang 14 does not parse LibTorch's
headers with Debian's libstdc++ 12, so models/, simulation/, coordinator_main.cc and client/'s
LibTorch-linked files are not checked here (client/'s fedkit::artifact_policy is). Exit status: 0 clean, 1 a thread-safety error, 77 (ctest's skip) when
clang++-14 or the compilation database is missing.
Usage: scripts/thread_safety.py BUILD_DIR
"""
import json
import os
import shlex
import shutil
import subprocess
import sys

FOLDERS = ("core/", "aggregation/", "compression/", "privacy/", "artifacts/", "server/", "client/",
           "monitoring/", "cli/", "dashboard/")


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    database = os.path.join(build, "compile_commands.json")
    clang = shutil.which("clang++-14")
    if clang is None or not os.path.exists(database):
        print("thread_safety: skipped (needs clang++-14 and " + database + ")")
        return 77
    failures = 0
    checked = 0
    skipped = 0
    for entry in json.load(open(database)):
        source = os.path.relpath(entry["file"], root)
        if not source.startswith(FOLDERS) or source.endswith("_test.cc"):
            continue
        if "torch/csrc/api/include" in entry["command"]:
            skipped += 1
            continue
        args = shlex.split(entry["command"])[1:]
        keep = []
        skip = False
        for arg in args:
            if skip:
                skip = False
                continue
            if arg in ("-o", "-c"):
                skip = arg == "-o"
                continue
            if arg == entry["file"]:
                continue
            keep.append(arg)
        command = [clang, "-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety",
                   "-Wno-unknown-warning-option"] + keep + [entry["file"]]
        result = subprocess.run(command, cwd=entry["directory"], capture_output=True, text=True)
        checked += 1
        if result.returncode != 0:
            failures += 1
            print("== " + source)
            print(result.stderr)
    print("thread_safety: %d translation units checked, %d with errors (%d LibTorch ones skipped)"
          % (checked, failures, skipped))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
