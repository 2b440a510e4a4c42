#!/usr/bin/env bash
# benches/profile.sh BIN patch|post|head — perf profile of one tusk workload.
#
# Starts BIN (a tusk binary, e.g. target/release/tusk) on 127.0.0.1 with a fresh
# data dir under target/bench/prof/KIND, records it with `perf record -F 997 -g`
# (cpu-clock: this VM has no PMU) during one workload, and prints the top
# symbols and the split per thread:
#   patch  one 1 GiB PATCH (curl -T from /dev/shm)
#   post   wrk POST creations for 5 s (CONNS=16 connections)
#   head   hey HEAD on one upload (80,000 requests, 16 connections)
# Needs perf, curl, wrk, hey. Full report: perf report -i target/bench/prof/KIND/perf.data
set -u
[ $# -eq 2 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
BIN=$(realpath "$1"); KIND=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
D="$ROOT/target/bench/prof/$KIND"; rm -rf "$D"; mkdir -p "$D/data"
"$BIN" serve --listen 127.0.0.1:0 --data-dir "$D/data" > "$D/server.log" 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null' EXIT
for _ in $(seq 100); do grep -q "listening on" "$D/server.log" && break; sleep 0.1; done
ADDR=$(grep -o 'listening on http://[^/]*' "$D/server.log" | sed 's#.*http://##')
URL="http://$ADDR/files/"
post() { curl -s -D - -o /dev/null -X POST -H 'Tus-Resumable: 1.0.0' -H "Upload-Length: $1" "$URL" \
  | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}'; }
record() { perf record -F 997 -g -p "$SP" -o "$D/perf.data" 2>"$D/perf.err" & PP=$!; sleep 0.5; }
case $KIND in
  patch)
    big=/dev/shm/tusk-profile-1g.bin
    [ -f $big ] || dd if=/dev/urandom of=$big bs=1M count=1024 status=none
    U=$(post 1073741824); record
    curl -s -o /dev/null -w 'PATCH %{http_code} in %{time_total} s\n' -X PATCH -H 'Tus-Resumable: 1.0.0' \
      -H 'Upload-Offset: 0' -H 'Content-Type: application/offset+octet-stream' -H 'Expect:' -T $big "$U" ;;
  post)
    printf '%s\n' 'function init(args) req = wrk.format("POST", nil, {["Tus-Resumable"] = "1.0.0", ["Upload-Length"] = "1024"}, "") end' \
      'function request() return req end' > "$D/post.lua"
    record
    timeout 30 wrk -t1 -c"${CONNS:-16}" -d5s --latency -s "$D/post.lua" "$URL" | grep -E "requests in|Requests/sec|50%|99%" ;;
  head)
    U=$(post 16)
    curl -s -o /dev/null -X PATCH -H 'Tus-Resumable: 1.0.0' -H 'Upload-Offset: 0' \
      -H 'Content-Type: application/offset+octet-stream' --data-binary 0123456789abcdef "$U"
    record
    timeout 60 hey -n 80000 -c 16 -cpus 1 -m HEAD -H 'Tus-Resumable: 1.0.0' "$U" | grep -E "Requests/sec|\[200\]|50%|99%" ;;
  *) echo "unknown workload $KIND (patch|post|head)" >&2; exit 2 ;;
esac
kill -INT $PP; wait $PP
grep -E "VmHWM" "/proc/$SP/status"
echo "--- samples per thread (997/s per busy thread)"
perf script -i "$D/perf.data" -F tid,comm 2>/dev/null | sort | uniq -c | sort -rn | head -6
echo "--- top symbols (self)"
perf report -i "$D/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null | grep -E '^ +[0-9.]+%' | head -30
