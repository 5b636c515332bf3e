#!/usr/bin/env bash
# Installs the local Kafka-compatible broker (Tansu, with its SQLite storage engine) into the cache folder,
# outside the clone, unless it is already there. Prints the binary's path.
set -euo pipefail
version=0.6.0
cache=${HOOKLINE_CACHE:-$HOME/.cache/hookline}
root="$cache/tools/tansu-$version-libsql"
bin="$root/bin/tansu"
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$version"; then
  echo "$bin"
  exit 0
fi
echo "installing tansu $version (SQLite engine) into $root; this takes about 10-15 minutes once" >&2
# A private target dir so a concurrent project build is not disturbed; removed afterwards.
build_dir=$(mktemp -d "${TMPDIR:-/tmp}/tansu-build.XXXXXX")
trap 'rm -rf "$build_dir"' EXIT
CARGO_TARGET_DIR="$build_dir" cargo install tansu --version "$version" --locked --features libsql --root "$root" >&2
"$bin" --version >&2
echo "$bin"
