#!/usr/bin/env bash
# Builds libpomelo and runs every check, as CI does (.ci/run execs this script):
#   1. installs the dependencies (tools/setup.sh: apt packages, npm ci of the test peers);
#   2. gcc build, warnings as errors, all tests (build/);
#   3. clang build with ASan + UBSan and without zlib, all tests again (build-asan/);
#   4. clang-format check of every tracked C/C++ file;
#   5. clang libFuzzer build (build-fuzz/) and a short run of each fuzz target over its corpus;
#   6. packaging: the installed library through pkg-config, and libpomelo as a meson subproject.
# Every step runs even when an earlier one failed (unless it needs that one's output). The last
# line printed is "N passed, N failed[, N skipped]": the tests of both builds, counted from their
# meson-logs/testlog.json, plus one failure for each failed step that is not a test run.
# Exits 0 only when everything passed.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
root=$PWD

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed_steps=()

# step NAME COMMAND...: runs one step, times it, and records its failure.
step() {
  local name=$1 start=$SECONDS
  shift
  echo
  echo "=== $name"
  if "$@"; then
    echo "=== $name: ok ($((SECONDS - start)) s)"
  else
    echo "=== $name: FAILED ($((SECONDS - start)) s)"
    failed_steps+=("$name")
    return 1
  fi
}

# configure DIR OPTION...: meson setup of DIR, reusing DIR when an earlier run configured it
# (the compiler comes from CC/CXX on the first setup only; start from scratch if that fails).
configure() {
  local dir=$1
  shift
  if [ -e "$dir/meson-private/coredata.dat" ]; then
    meson setup --reconfigure "$dir" "$@" && return 0
    echo "reconfiguring $dir failed; setting it up from scratch"
    rm -rf "$dir"
  fi
  meson setup "$dir" "$@"
}

# build CC CXX DIR OPTION...: configures DIR with those compilers and compiles.
build() {
  local cc=$1 cxx=$2
  shift 2
  CC=$cc CXX=$cxx configure "$@" && meson compile -C "$1"
}

# run_tests DIR [MESON TEST OPTION...]: runs the test suite of DIR. Failing tests are counted from
# its testlog.json at the end; this step fails only when meson wrote no log at all.
run_tests() {
  local dir=$1
  shift
  rm -f "$dir/meson-logs/testlog.json"
  meson test -C "$dir" --print-errorlogs --num-processes 2 "$@"
  [ -s "$dir/meson-logs/testlog.json" ]
}

check_format() {
  local files=() f
  while IFS= read -r f; do
    [ -f "$f" ] && files+=("$f")
  done < <(git ls-files '*.c' '*.h' '*.cpp' 2>/dev/null ||
    find . \( -name 'build*' -o -name node_modules -o -name .git \) -prune -o \
      -type f \( -name '*.c' -o -name '*.h' -o -name '*.cpp' \) -print)
  echo "checking ${#files[@]} files with $(clang-format --version)"
  [ ${#files[@]} -eq 0 ] || clang-format --dry-run --Werror "${files[@]}"
}

# fuzz_smoke BINARY: a few thousand runs of one libFuzzer target, starting from its corpus in
# fuzz/corpus/<name> (read only: new inputs go to a scratch folder).
fuzz_smoke() {
  local bin=$1 name=${1##*/fuzz_}
  local log=$work/fuzz_$name.log corpus=()
  mkdir -p "$work/fuzz_$name"
  [ -d "fuzz/corpus/$name" ] && corpus=("fuzz/corpus/$name")
  if "$bin" -runs=2000 -max_total_time=120 -artifact_prefix="$work/fuzz_$name/" \
    "$work/fuzz_$name" "${corpus[@]}" >"$log" 2>&1; then
    tail -n 1 "$log"
  else
    tail -n 40 "$log"
    return 1
  fi
}

# The installed package: `meson install` into a scratch root, then a consumer program compiled
# and linked (shared, then static) with the flags pkg-config gives for that root.
check_pkgconfig() {
  local dest=$work/root pc prefix cflags libs libdir static_libs
  DESTDIR=$dest meson install -C build --quiet >"$work/install.log" 2>&1 ||
    { cat "$work/install.log"; return 1; }
  pc=$(find "$dest" -name libpomelo.pc | head -n 1)
  if [ -z "$pc" ]; then
    echo "meson install put no libpomelo.pc under $dest"
    return 1
  fi
  prefix=$(sed -n 's/^prefix=//p' "$pc")
  # The .pc names the real prefix; point it into the scratch root.
  local pkgconf=(env PKG_CONFIG_PATH="${pc%/*}" pkg-config --define-variable=prefix="$dest$prefix")
  cflags=$("${pkgconf[@]}" --cflags libpomelo) &&
    libs=$("${pkgconf[@]}" --libs libpomelo) &&
    static_libs=$("${pkgconf[@]}" --static --libs libpomelo) &&
    libdir=$("${pkgconf[@]}" --variable=libdir libpomelo) || return 1
  echo "pkg-config: $cflags $libs"
  local cc=${CC:-cc} strict=(-std=c99 -pedantic-errors -Wall -Wextra -Werror)
  # shellcheck disable=SC2086 # the flags are word lists
  "$cc" "${strict[@]}" tests/packaging/consumer.c $cflags $libs -o "$work/consumer" &&
    LD_LIBRARY_PATH=$libdir "$work/consumer" || return 1
  # Static: the archive by its file name, and the private dependencies (zlib) from --static.
  # shellcheck disable=SC2086
  "$cc" "${strict[@]}" tests/packaging/consumer.c $cflags ${static_libs//-lpomelo/-l:libpomelo.a} \
    -o "$work/consumer-static" && "$work/consumer-static"
}

# libpomelo as a meson subproject: a scratch project with subprojects/libpomelo pointing here,
# finding it with dependency() through the fallback. Its tests must not be registered.
check_subproject() {
  local proj=$work/subproject
  mkdir -p "$proj/subprojects"
  ln -s "$root" "$proj/subprojects/libpomelo"
  cp tests/packaging/consumer.c "$proj/"
  cat >"$proj/meson.build" <<'EOF'
project('consumer', 'c', meson_version: '>=1.0.0', default_options: ['c_std=c99'])
pomelo = dependency('libpomelo', fallback: ['libpomelo', 'pomelo_dep'])
test('consumer', executable('consumer', 'consumer.c', dependencies: pomelo))
EOF
  # forcefallback: use the subproject even where a libpomelo is installed.
  meson setup "$proj/build" "$proj" --wrap-mode=forcefallback >"$work/subproject.log" 2>&1 ||
    { cat "$work/subproject.log"; return 1; }
  meson compile -C "$proj/build" >>"$work/subproject.log" 2>&1 ||
    { cat "$work/subproject.log"; return 1; }
  "$proj/build/consumer" || return 1
  if meson test -C "$proj/build" --list 2>/dev/null | grep '^libpomelo:'; then
    echo "the libpomelo subproject registered its own tests in the parent project"
    return 1
  fi
}

# count_results NUMBER_OF_FAILED_STEPS TESTLOG...: prints the final line; false if any failed.
count_results() {
  python3 - "$@" <<'EOF'
import json, os, sys

passed = failed = skipped = 0
failed += int(sys.argv[1])
for path in sys.argv[2:]:
    if not os.path.exists(path):
        continue  # that step already counts as failed
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            result = json.loads(line).get("result")
            if result in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif result == "SKIP":
                skipped += 1
            else:  # FAIL, TIMEOUT, ERROR, UNEXPECTEDPASS
                failed += 1
text = "%d passed, %d failed" % (passed, failed)
if skipped:
    text += ", %d skipped" % skipped
print(text)
sys.exit(1 if failed else 0)
EOF
}

# Test logs of an earlier run must not be counted if this run's builds fail.
rm -f build/meson-logs/testlog.json build-asan/meson-logs/testlog.json

step "setup (tools/setup.sh)" bash tools/setup.sh

# Sanitizer settings for every run of an instrumented binary below.
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1

if step "gcc build" build gcc g++ build --werror -Dbuildtype=debugoptimized \
  -Dpeer_tests=enabled -Dtests=true -Dexamples=true -Dbench=true -Dzlib=auto -Dfuzz=false \
  -Dlibuv=enabled -Dlibevent=enabled -Dopenssl=enabled -Dnats=enabled \
  -Db_sanitize=none; then
  step "gcc tests" run_tests build
  step "pkg-config consumer" check_pkgconfig
fi

if step "clang ASan/UBSan build" build clang clang++ build-asan --werror \
  -Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false -Dzlib=disabled \
  -Dpeer_tests=enabled -Dtests=true -Dexamples=true -Dbench=true -Dfuzz=false \
  -Dlibuv=enabled -Dlibevent=enabled -Dopenssl=enabled -Dnats=enabled; then
  step "clang ASan/UBSan tests" run_tests build-asan --timeout-multiplier 3
fi

step "clang-format" check_format

if step "libFuzzer build" build clang clang++ build-fuzz --werror -Dfuzz=true \
  -Db_sanitize=address,undefined -Db_lundef=false -Dtests=false -Dexamples=false -Dbench=false \
  -Dpeer_tests=disabled; then
  while IFS= read -r bin; do
    step "fuzz smoke: ${bin##*/}" fuzz_smoke "$bin"
  done < <(find build-fuzz/fuzz -maxdepth 1 -type f -name 'fuzz_*' -perm -u+x | sort)
fi

step "meson subproject consumer" check_subproject

echo
if [ ${#failed_steps[@]} -gt 0 ]; then
  echo "failed steps: ${failed_steps[*]}"
fi
count_results ${#failed_steps[@]} build/meson-logs/testlog.json build-asan/meson-logs/testlog.json
