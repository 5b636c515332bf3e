#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer), each for FUZZ_SECONDS (default 600), and prints a
# line per target: runs, runs/s, corpus size, and whether it found a crash.
#
#   scripts/fuzz.sh                 every target, 10 minutes each
#   FUZZ_SECONDS=15 scripts/fuzz.sh  every target briefly (make test does this)
#   scripts/fuzz.sh verify keys     some targets
#
# Needs a nightly toolchain (libFuzzer's coverage instrumentation is a nightly rustc flag); cargo-fuzz is
# installed into $HOOKLINE_CACHE/tools when missing. Each target's working corpus grows in
# $HOOKLINE_CACHE/fuzz/corpus/<target>, starting from the committed seeds in fuzz/seeds/<target>; a crash is
# saved in fuzz/artifacts/<target>/ (ignored by git) and the script exits 1: add the input to fuzz/seeds and
# a regression test next to the code it broke.
set -euo pipefail
cd "$(dirname "$0")/.."
HOOKLINE_CACHE=${HOOKLINE_CACHE:-$HOME/.cache/hookline}
FUZZ_SECONDS=${FUZZ_SECONDS:-600}
CARGO_FUZZ_VERSION=0.13.2
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(verify keys raw_meta pipeline config)
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: installing the nightly toolchain" >&2
  rustup toolchain install nightly --profile minimal >&2
fi
cargo_fuzz=$HOOKLINE_CACHE/tools/cargo-fuzz/bin/cargo-fuzz
if ! "$cargo_fuzz" --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" --root "$HOOKLINE_CACHE/tools/cargo-fuzz" >&2
fi

# No sanitizer: hookline's code is safe Rust, where AddressSanitizer finds nothing the compiler has not ruled
# out, at half the speed. Debug assertions are on (-a): overflows and `debug_assert!`s fail like panics.
fuzz=(rustup run nightly "$cargo_fuzz" fuzz)
options=(--sanitizer none --debug-assertions --target-dir "$HOOKLINE_CACHE/fuzz/target")
"${fuzz[@]}" build "${options[@]}" >&2

failed=()
for t in "${targets[@]}"; do
  corpus=$HOOKLINE_CACHE/fuzz/corpus/$t
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  log=$HOOKLINE_CACHE/fuzz/$t.log
  # -rss_limit_mb: a webhook may not make a parser use unbounded memory; -timeout: nor spin.
  if "${fuzz[@]}" run "${options[@]}" "$t" "$corpus" "fuzz/seeds/$t" -- \
      -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
      -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=CRASH
    failed+=("$t")
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  peak=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  printf 'fuzz %-9s %s: %s runs in %s s (%s/s), corpus %s inputs, peak RSS %s MB\n' \
    "$t" "$result" "$runs" "$FUZZ_SECONDS" "$rate" "$(find "$corpus" -type f | wc -l)" "$peak"
  if [ "$result" != ok ]; then
    tail -40 "$log"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]}; inputs in fuzz/artifacts/" >&2
  exit 1
fi
