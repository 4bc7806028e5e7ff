#!/usr/bin/env bash
# Fuzzes the parsers of untrusted input (fuzz/, cargo-fuzz + libFuzzer), each
# target for a fixed time. Not part of CI.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     # default: 60 s each, every target
#
# Targets: http_envelope, component_yaml, cron_schedule. Seeds come from
# fuzz/seeds/<target> (and tests/fixtures/components for component_yaml), with
# the libFuzzer dictionary fuzz/dicts/<target>.dict. New corpus entries go to
# fuzz/corpus/<target>, crashes to fuzz/artifacts/<target>/, logs to fuzz/logs/.
# cargo-fuzz needs nightly rustc flags: by default we use the installed stable
# toolchain with RUSTC_BOOTSTRAP=1 (works with rustc 1.95); FUZZ_TOOLCHAIN=nightly
# picks a nightly toolchain instead.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(http_envelope component_yaml cron_schedule)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
  fuzz=(cargo "+$FUZZ_TOOLCHAIN" fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

cd "$root/fuzz"
mkdir -p logs
"${fuzz[@]}" build
failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== fuzzing $t for ${secs}s (log: fuzz/logs/$t.log)"
  # A 10 s input is a hang worth reporting (libFuzzer waits 20 min by default).
  args=(-max_total_time="$secs" -rss_limit_mb=4096 -timeout=10)
  if [ -f "dicts/$t.dict" ]; then
    args+=(-dict="dicts/$t.dict")
  fi
  # Seeds: fuzz/seeds/<target>, and every component fixture for the YAML target.
  seeds=()
  if [ -d "seeds/$t" ]; then
    seeds+=("seeds/$t")
  fi
  if [ "$t" = component_yaml ]; then
    seeds+=(../tests/fixtures/components/good ../tests/fixtures/components/broken)
  fi
  if "${fuzz[@]}" run "$t" "corpus/$t" "${seeds[@]}" -- "${args[@]}" >"logs/$t.log" 2>&1; then
    grep -E '^Done [0-9]+ runs' "logs/$t.log" || tail -n 3 "logs/$t.log"
  else
    echo "!! $t failed: see fuzz/logs/$t.log and fuzz/artifacts/$t/"
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY' "logs/$t.log" | head -n 5 || true
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashes in: ${failed[*]}"
  exit 1
fi
echo "no crashes"
