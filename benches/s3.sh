#!/usr/bin/env bash
# benches/s3.sh — tusk with --storage s3 beside @tus/server 2.4.5 with
# @tus/s3-store (../shared/peers/start-node-s3.sh), both on one fresh Garage
# started here (scripts/garage-start), measured by the same harness
# (../shared/peers/bench.sh) in one run, with the ceiling of this machine's
# Garage: one plain PUT of the same bytes (curl --aws-sigv4).
#
# Usage: benches/s3.sh [TUSK_BINARY]     (default target/release/tusk; build it first)
# Knobs: BENCH_BIG_MIB (256), BENCH_CHUNK_MIB (8), BENCH_CONC (16),
#   BENCH_CONC_MIB (16), PART_SIZE_MIB (16, both servers), BENCH_QUIET_WAIT (60).
# Prints the harness's figures for each server and a table of MB/s with
# tusk/peer and tusk/ceiling ratios. Every upload is verified by GET.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/release/tusk}
PEERS=${PEERS:-$ROOT/../shared/peers}
[ -x "$BIN" ] || { echo "no tusk binary at $BIN: cargo build --release" >&2; exit 2; }
[ -f "$PEERS/bench.sh" ] || { echo "the shared peers folder is missing: $PEERS" >&2; exit 2; }
export BENCH_BIG_MIB=${BENCH_BIG_MIB:-256} BENCH_CHUNK_MIB=${BENCH_CHUNK_MIB:-8}
export BENCH_CONC=${BENCH_CONC:-16} BENCH_CONC_MIB=${BENCH_CONC_MIB:-16}
export BENCH_QUIET_WAIT=${BENCH_QUIET_WAIT:-60} BENCH_PHASES=ingest,concurrency
PART_MIB=${PART_SIZE_MIB:-16}

WORK=$(mktemp -d /tmp/tusk-s3-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

eval "$("$ROOT/scripts/garage-start" "$WORK/garage")"
PIDS+=("$GARAGE_PID")
export S3_ENDPOINT S3_BUCKET S3_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() {
  for _ in $(seq 1 600); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -X OPTIONS -H 'Tus-Resumable: 1.0.0' "$1" || true)
    case $code in 2*) return 0 ;; esac
    sleep 0.5
  done
  echo "not ready: $1" >&2; exit 1
}

TSV="$WORK/figures.tsv"
: > "$TSV"

# Ceiling: the same bytes as one signed PUT straight to Garage.
head -c "$((BENCH_BIG_MIB << 20))" /dev/urandom > "$WORK/big.bin"
start=$(date +%s.%N)
curl -sf --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
  -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
  -T "$WORK/big.bin" "$S3_ENDPOINT/$S3_BUCKET/ceiling.bin" -o /dev/null --max-time 600
end=$(date +%s.%N)
rm -f "$WORK/big.bin"
ceiling=$(echo "scale=1; $BENCH_BIG_MIB * 1.048576 / ($end - $start)" | bc)
printf 'ceiling\tgarage_put_MBps\t%s\tMB/s\tone PUT of %s MiB\n' "$ceiling" "$BENCH_BIG_MIB" >> "$TSV"
echo "ceiling: one PUT of $BENCH_BIG_MIB MiB to Garage: $ceiling MB/s" >&2

# tusk
PORT=$(free_port)
"$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/tusk" --storage s3 --s3-endpoint "$S3_ENDPOINT" \
  --s3-bucket "$S3_BUCKET" --s3-region "$S3_REGION" --s3-path-style --s3-prefix tusk/ \
  --s3-part-size "${PART_MIB}MiB" > "$WORK/tusk.log" 2>&1 &
TPID=$!
PIDS+=("$TPID")
wait_ready "http://127.0.0.1:$PORT/files/"
BENCH_LABEL=tusk BENCH_TSV="$TSV" "$PEERS/bench.sh" "http://127.0.0.1:$PORT/files/" "$TPID"
kill "$TPID"

# @tus/server with @tus/s3-store, same part size, same bucket
NPORT=$(free_port)
PART_SIZE=$((PART_MIB << 20)) "$PEERS/start-node-s3.sh" "$NPORT" > "$WORK/node.log" 2>&1 &
NPID=$!
PIDS+=("$NPID")
wait_ready "http://127.0.0.1:$NPORT/files/"
BENCH_LABEL=node-s3 BENCH_TSV="$TSV" "$PEERS/bench.sh" "http://127.0.0.1:$NPORT/files/" "$NPID"
kill "$NPID"

echo
echo "# S3 figures (MB/s): tusk, @tus/s3-store, tusk/peer, tusk/ceiling (one PUT: $ceiling MB/s)"
awk -F'\t' -v c="$ceiling" '
  $4 == "MB/s" && $1 != "ceiling" { v[$1 "|" $2] = $3; names[$2] = 1 }
  END {
    for (n in names) {
      t = v["tusk|" n]; p = v["node-s3|" n]
      if (t == "") continue
      printf "%-28s %8s %8s %7s %7s\n", n, t, (p == "" ? "-" : p), (p > 0 ? sprintf("%.2f", t / p) : "-"), sprintf("%.0f%%", 100 * t / c)
    }
  }' "$TSV" | sort
