#!/usr/bin/env bash
# benches/fairness.sh [BIN] [ASSETS] [SECONDS] — issue #12's fairness figure:
# HEAD latency on one upload while four clients run the worst list query
# (a filter that matches none of ASSETS assets, default 10000) and one
# client POSTs creations with the largest Upload-Metadata allowed (256
# pairs, ~16 KiB). Prints hey's HEAD latency distribution (p50/p99) and the
# list and POST rates reached meanwhile. Needs curl and hey.
set -eu
BIN=$(realpath "${1:-target/release/tusk}"); N=${2:-10000}; SECS=${3:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$ROOT/target"
d=$(mktemp -d "$ROOT/target/fairness.XXXXXX")
"$BIN" serve --listen 127.0.0.1:0 --data-dir "$d/data" > "$d/log" 2>&1 &
P=$!
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$d"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$d/log" && break; sleep 0.1; done
base="http://$(grep -o 'listening on http://[^/]*' "$d/log" | sed 's#.*http://##')"

# ASSETS small uploads, none of them audio.
hey -n "$N" -c 16 -m POST -H 'Tus-Resumable: 1.0.0' -H 'Upload-Length: 5' "$base/files/" > /dev/null
head_url=$(curl -s -D - -o /dev/null -X POST -H 'Tus-Resumable: 1.0.0' -H 'Upload-Length: 10' "$base/files/" |
  tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')

# 256 pairs of 56 base64 bytes: 15,871 bytes, just under the 16 KiB allowed.
meta=$(for i in $(seq 0 255); do printf 'k%03d %s,' "$i" "$(head -c 42 /dev/zero | tr '\0' 'x' | base64 -w0)"; done)
meta=${meta%,}
echo "Upload-Metadata: ${#meta} bytes; $N assets; $SECS s of load"

count() { local n=0; while [ -e "$d/run" ]; do "$@" > /dev/null 2>&1 && n=$((n + 1)); done; echo "$n" > "$d/$BASHPID.n"; }
touch "$d/run"
for _ in 1 2 3 4; do count curl -s -o /dev/null "$base/v1/assets?type=audio&limit=1" & done
count curl -s -o /dev/null -X POST -H 'Tus-Resumable: 1.0.0' -H 'Upload-Length: 1' -H "Upload-Metadata: $meta" "$base/files/" &
sleep 1
hey -z "${SECS}s" -c 4 -m HEAD -H 'Tus-Resumable: 1.0.0' "$head_url" |
  grep -E 'Requests/sec|Slowest|Average|50%|90%|99%|\[2' | sed 's/^ */  /'
rm "$d/run"
wait $(jobs -p | grep -v "^$P$") 2>/dev/null || true
lists=0; for f in "$d"/*.n; do lists=$((lists + $(cat "$f"))); done
echo "list queries + POSTs completed meanwhile: $lists"
kill $P
