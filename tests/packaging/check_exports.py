#!/usr/bin/env python3
"""Packaging check: the shared library exports exactly the functions the public headers declare.

Usage: check_exports.py LIBRARY HEADER_OR_DIR...

Lists the symbols LIBRARY defines in its dynamic symbol table (nm -D --defined-only, types
T, D, B, R) and the names declared `POMELO_API <type> <name>(` in the headers (the .h files
given, or found in the folders given), and fails with the differences unless the sets are equal.
"""
import os
import re
import subprocess
import sys

# Symbols the toolchain adds (sanitizer and coverage runtimes, ELF markers), not ours.
TOOLCHAIN = re.compile(r"^(__|_[A-Z]|_init$|_fini$|_edata$|_end$)")


def exported(library):
    nm = os.environ.get("NM", "nm")
    out = subprocess.run([nm, "-D", "--defined-only", library], check=True,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    names = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] in "TDBR":
            name = fields[2].split("@")[0]  # drop any symbol version
            if not TOOLCHAIN.match(name):
                names.add(name)
    return names


def strip_c(text):
    """Removes comments, string literals and preprocessor directives (with continuations)."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r'"(\\.|[^"\\\n])*"', '""', text)
    text = re.sub(r"^[ \t]*#(\\\n|[^\n])*", " ", text, flags=re.M)
    return text


def declared(paths):
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(p, f) for f in os.listdir(p) if f.endswith(".h"))
        else:
            files.append(p)
    names = {}
    decl = re.compile(r"\bPOMELO_API\b([^;{}()]*?)\b([A-Za-z_]\w*)\s*\(")
    for path in files:
        with open(path, encoding="utf-8") as f:
            text = strip_c(f.read())
        for m in decl.finditer(text):
            names[m.group(2)] = os.path.basename(path)
    return names


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    lib_names = exported(argv[1])
    header_names = declared(argv[2:])
    print("%d symbols exported by %s, %d functions declared POMELO_API"
          % (len(lib_names), os.path.basename(argv[1]), len(header_names)))
    undeclared = sorted(lib_names - set(header_names))
    missing = sorted(set(header_names) - lib_names)
    for name in undeclared:
        print("exported but not declared POMELO_API in a public header: %s" % name)
    for name in missing:
        print("declared POMELO_API in %s but not exported: %s" % (header_names[name], name))
    return 1 if undeclared or missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
