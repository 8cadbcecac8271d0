#!/usr/bin/env bash
# Demo: installs the dependencies, builds libpomelo (release, in build-release/), then runs the
# demo. For now the demo is pomelo-dump decoding a recorded chat session
# (examples/data/chat-s2c.bin); it will become the chat example and its web page.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

builddir=build-release
options=(-Dbuildtype=release -Dtests=false -Dbench=false)

bash tools/setup.sh || exit 1

if [ -e "$builddir/meson-private/coredata.dat" ]; then
  meson setup --reconfigure "$builddir" "${options[@]}" || exit 1
else
  meson setup "$builddir" "${options[@]}" || exit 1
fi
meson compile -C "$builddir" || exit 1

dump=$builddir/examples/pomelo-dump
capture=examples/data/chat-s2c.bin
if [ -x "$dump" ] && [ -f "$capture" ]; then
  echo
  echo "Decoding the packages of a recorded chat session ($capture):"
  exec "$dump" "$capture"
fi
echo
echo "demo: nothing to run yet: the demo needs $dump (built from examples/) and $capture."
echo "demo: the library is built in $builddir/; run 'bash tools/test.sh' to test it."
exit 1
