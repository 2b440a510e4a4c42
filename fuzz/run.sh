#!/usr/bin/env bash
# Bounded fuzzing on stable Rust (no sanitizer: `cargo fuzz ... -s none`).
#
#   fuzz/run.sh [SECONDS_PER_TARGET]     (default 20)
#
# 1. installs cargo-fuzz if it is missing;
# 2. builds every target once;
# 3. replays every committed input under regressions/<target>/;
# 4. fuzzes each target for SECONDS_PER_TARGET from a fresh corpus/<target>/
#    (seeded with its regressions).
# Exits non-zero if any input crashes, naming the artifact to reproduce it with.
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-20}"
case "$secs" in
    '' | *[!0-9]*)
        echo "usage: $0 [SECONDS_PER_TARGET]" >&2
        exit 2
        ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
cargo fuzz --version

# The service target's data directory (and anything else the targets make in
# TMPDIR) lives here and goes when we do; tmpfs makes its fsyncs cheap.
base="${TMPDIR:-/tmp}"
if [ -d /dev/shm ] && [ -w /dev/shm ]; then base=/dev/shm; fi
scratch="$(mktemp -d "$base/tusk-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
export TMPDIR="$scratch"
export RUST_BACKTRACE=1

mapfile -t targets < <(cargo fuzz list)
echo "== targets: ${targets[*]}"

echo "== building (cargo fuzz build -s none)"
start=$SECONDS
cargo fuzz build -s none
echo "   built in $((SECONDS - start)) s"

mkdir -p artifacts/logs
failed=()

report_failure() { # label target log marker
    local label="$1" t="$2" log="$3" marker="$4"
    echo "!! $label failed (full log: $PWD/$log)"
    if grep -q "panicked at" "$log"; then
        # The panic message and its stack, up to libFuzzer's verdict.
        sed -n '/panicked at/,/SUMMARY: libFuzzer/p' "$log" | head -n 120 | sed 's/^/   /'
    else
        tail -n 40 "$log" | sed 's/^/   /'
    fi
    grep '^Running: ' "$log" | tail -n 1 | sed 's/^/!! last input run: /' || true
    echo "!! new artifacts (reproduce with: cargo fuzz run -s none $t <file>):"
    find "artifacts/$t" -type f -newer "$marker" 2>/dev/null | sed "s|^|   $PWD/|" || true
    failed+=("$label")
}

echo "== replaying regressions/"
for t in "${targets[@]}"; do
    dir="regressions/$t"
    [ -d "$dir" ] || continue
    mapfile -t inputs < <(find "$dir" -type f ! -name '.*' | sort)
    [ "${#inputs[@]}" -gt 0 ] || continue
    log="artifacts/logs/$t.replay.log"
    marker="artifacts/logs/.$t.replay.start"
    touch "$marker"
    if cargo fuzz run -s none "$t" "${inputs[@]}" -- -runs=1 >"$log" 2>&1; then
        echo "   $t: ${#inputs[@]} inputs pass"
    else
        report_failure "$t (replay)" "$t" "$log" "$marker"
    fi
done

# Per-target libFuzzer options.
options_for() {
    case "$1" in
        service) echo "-max_len=4096 -len_control=0 -timeout=60" ;;
        upload_metadata) echo "-max_len=20000 -timeout=10" ;;
        *) echo "-timeout=10" ;;
    esac
}

echo "== fuzzing each target for ${secs} s"
summary=()
for t in "${targets[@]}"; do
    corpus="corpus/$t"
    rm -rf "$corpus"
    mkdir -p "$corpus"
    seeds=()
    [ -d "regressions/$t" ] && seeds=("regressions/$t")
    dict=()
    [ -f "dicts/$t.dict" ] && dict=("-dict=dicts/$t.dict")
    log="artifacts/logs/$t.log"
    marker="artifacts/logs/.$t.start"
    touch "$marker"
    # shellcheck disable=SC2046 # options_for prints several words on purpose
    if cargo fuzz run -s none "$t" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$secs" -print_final_stats=1 "${dict[@]}" $(options_for "$t") >"$log" 2>&1; then
        runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
        rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
        line="$(printf '%-16s %10s runs %8s exec/s' "$t" "${runs:-?}" "${rate:-?}")"
        echo "   $line"
        summary+=("$line")
    else
        report_failure "$t" "$t" "$log" "$marker"
    fi
done

echo "== summary"
for line in "${summary[@]}"; do echo "   $line"; done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED: ${failed[*]} (logs in $PWD/artifacts/logs/)"
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${secs} s each without a crash"
