#!/usr/bin/env bash
# Installs what building and testing libpomelo and running its demo need, on Debian 12
# (bookworm): the toolchain and tools from apt, then the npm packages of every test and example
# folder (npm ci).
# Quick when everything is already there: apt is skipped unless something is missing.
# Used by tools/test.sh (CI) and tools/demo.sh. Exits non-zero if something could not be installed.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

# Debian package -> a command it provides ("-" : check the package itself with dpkg).
apt_packages=(
  meson:meson
  ninja-build:ninja
  pkg-config:pkg-config
  gcc:gcc
  g++:g++
  clang:clang
  libclang-rt-14-dev:- # ASan/UBSan/libFuzzer runtimes for clang
  zlib1g-dev:-
  libuv1-dev:-   # the examples on other loops (pomelo-echo-uv, -event, -tls)
  libevent-dev:-
  libssl-dev:-
  libnats-dev:- # libpomelo-nats, the cluster bus over NATS (-Dnats)
  nats-server:- # its tests start a real one (tests/test_nats.c; in /usr/sbin, off most PATHs)
  openssl:openssl # the TLS test makes its certificate with it
  chromium:chromium # the chat page's browser test (tests/peers/chat-browser.js)
  nodejs:node
  python3:python3
  clang-format:clang-format
  git:git
  ca-certificates:-
  procps:pgrep   # ps and pgrep: the soak and the benches find their processes
  iproute2:ss    # ss: the benches look for free ports
)

installed() { # installed PACKAGE: is the Debian package installed?
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# Runs apt-get as root: directly when we are root, else through sudo when there is one.
apt_get() {
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get "$@"
  elif command -v sudo >/dev/null; then
    sudo env DEBIAN_FRONTEND=noninteractive apt-get "$@"
  else
    echo "setup: not root and no sudo: cannot run apt-get $*" >&2
    return 1
  fi
}

apt_updated=0
apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "setup: no apt-get on this system; install these yourself: $*" >&2
    return 1
  fi
  if [ "$apt_updated" = 0 ]; then
    apt_get update || return 1
    apt_updated=1
  fi
  apt_get install -y "$@"
}

status=0

missing=()
for entry in "${apt_packages[@]}"; do
  pkg=${entry%%:*} cmd=${entry#*:}
  if [ "$cmd" != - ] && command -v "$cmd" >/dev/null; then
    continue
  fi
  installed "$pkg" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt_install "${missing[@]}" || status=1
fi

# npm: nodesource's nodejs bundles it, and Debian's npm package conflicts with that one; Debian's
# own nodejs does not, so install Debian's npm only when there is still no npm command.
if ! command -v npm >/dev/null; then
  echo "setup: installing npm"
  apt_install npm || status=1
fi

# npm packages: every folder under tests/ and examples/ with a package-lock.json (the real peers
# of the tests, and the browser libraries of the chat demo's page in examples/chat/web).
while IFS= read -r lock; do
  dir=$(dirname "$lock")
  echo "setup: npm ci in $dir"
  (cd "$dir" && npm ci --no-audit --no-fund) || status=1
done < <(find tests examples -name package-lock.json -not -path '*/node_modules/*' | sort)

exit $status
