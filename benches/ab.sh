#!/usr/bin/env bash
# benches/ab.sh A_BIN B_BIN single|chunks|small|concurrent|post|head [PAIRS] — alternate two tusk builds on one workload.
#
# This VM's figures drift ±20 % from one minute to the next, so a lever is
# judged by alternating runs of the build before and after it, each on a
# fresh server and data directory (under target/ab/), PAIRS times (default 3):
#   single  POST, then one 1 GiB PATCH (curl -T from /dev/shm): seconds
#   chunks  POST, then the same 1 GiB as 128 PATCHes of 8 MiB (one curl, one connection): seconds
#   small   POST, then 256 MiB as 256 PATCHes of 1 MiB (one curl, one connection): seconds
#   concurrent  64 uploads of 16 MiB at once (POST, then one curl PATCH each): seconds
#   post    wrk POST creations for 5 s, 16 connections: req/s
#   head    hey HEAD on one small upload, 150,000 requests, 16 connections: req/s
# Each line also gives the server's CPU (from /proc/PID/stat) and peak RSS (VmHWM).
# SLOW_SYNC_US=N makes every sync of the servers take N µs longer
# (benches/slow-sync.c, preloaded): a disk whose syncs are slow, on one whose are not.
# Build the "before" binary with e.g.
#   git worktree add /tmp/before REV && CARGO_TARGET_DIR=/tmp/before-target cargo build --release
# Needs curl, wrk, hey, bc: installed from Debian when missing.
set -u
for tool in curl wrk hey bc; do
  command -v $tool > /dev/null || { echo "ab.sh: installing $tool" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $tool > /dev/null || { echo "ab.sh: cannot install $tool" >&2; exit 1; }; }
done
[ $# -ge 3 ] || { sed -n '2,18p' "$0" >&2; exit 2; }
A=$(realpath "$1"); B=$(realpath "$2"); KIND=$3; PAIRS=${4:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIG=/dev/shm/tusk-ab-1g.bin
[ "$KIND" != post ] && [ "$KIND" != head ] && [ ! -f $BIG ] && dd if=/dev/urandom of=$BIG bs=1M count=1024 status=none
CHUNK=/dev/shm/tusk-ab-8m.bin; [ -f $CHUNK ] || head -c 8388608 $BIG > $CHUNK
SIXTEEN=/dev/shm/tusk-ab-16m.bin; [ -f $SIXTEEN ] || head -c 16777216 $BIG > $SIXTEEN
ONE=/dev/shm/tusk-ab-1m.bin; [ -f $ONE ] || head -c 1048576 $BIG > $ONE

PRELOAD=
if [ -n "${SLOW_SYNC_US:-}" ]; then
  PRELOAD="$ROOT/target/slow-sync.so"
  cc -O2 -shared -fPIC -o "$PRELOAD" "$ROOT/benches/slow-sync.c" -ldl || { echo "ab.sh: cannot build slow-sync.so" >&2; exit 1; }
  echo "every sync $SLOW_SYNC_US µs slower" >&2
fi

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

one() { # BIN LABEL
  local d; d=$(mktemp -d "$ROOT/target/ab.XXXXXX")
  env ${PRELOAD:+LD_PRELOAD=$PRELOAD} "$1" serve --listen 127.0.0.1:0 --data-dir "$d/data" > "$d/log" 2>&1 &
  local P=$!
  for _ in $(seq 100); do grep -q "listening on" "$d/log" && break; sleep 0.1; done
  local url; url="http://$(grep -o 'listening on http://[^/]*' "$d/log" | sed 's#.*http://##')/files/"
  post() { curl -s -D - -o /dev/null -X POST -H 'Tus-Resumable: 1.0.0' -H "Upload-Length: $1" "$url" \
    | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}'; }
  local t0 t1 out
  case $KIND in
    single)
      local u; u=$(post 1073741824); sync; sleep 1; t0=$(ticks $P)
      out=$(curl -s -o /dev/null -w '%{http_code} in %{time_total} s' -X PATCH -H 'Tus-Resumable: 1.0.0' \
        -H 'Upload-Offset: 0' -H 'Content-Type: application/offset+octet-stream' -H 'Expect:' -T $BIG "$u") ;;
    chunks|small)
      # chunks: 128 PATCHes of 8 MiB; small: 256 of 1 MiB (what a client with
      # a small chunkSize sends; the cost per PATCH shows).
      local n=128 size=8388608 file=$CHUNK
      [ "$KIND" = small ] && { n=256; size=1048576; file=$ONE; }
      local u; u=$(post $((n * size))); sync; sleep 1; t0=$(ticks $P)
      # One keep-alive connection, each chunk streamed from its file (as
      # peers/bench.sh does): a curl per chunk with --data-binary spent more
      # time in the client than the server took.
      local cfg="$d/chunks.curlrc"; : > "$cfg"
      for i in $(seq 0 $((n - 1))); do
        [ "$i" -gt 0 ] && echo next >> "$cfg"
        printf 'url = "%s"\nrequest = "PATCH"\nheader = "Tus-Resumable: 1.0.0"\nheader = "Upload-Offset: %d"\nheader = "Content-Type: application/offset+octet-stream"\nheader = "Expect:"\nupload-file = "%s"\noutput = "/dev/null"\nsilent\n' \
          "$u" $((i * size)) "$file" >> "$cfg"
      done
      local s0; s0=$(date +%s.%N)
      curl -K "$cfg"
      local off; off=$(curl -s -I -H 'Tus-Resumable: 1.0.0' "$u" | tr -d '\r' | awk 'tolower($1)=="upload-offset:"{print $2}')
      out="offset $off in $(echo "$(date +%s.%N) - $s0" | bc) s" ;;
    concurrent)
      local us=(); for i in $(seq 64); do us+=("$(post 16777216)"); done; sync; sleep 1; t0=$(ticks $P)
      local s0; s0=$(date +%s.%N)
      for u in "${us[@]}"; do
        curl -s -o /dev/null -X PATCH -H 'Tus-Resumable: 1.0.0' -H 'Upload-Offset: 0' \
          -H 'Content-Type: application/offset+octet-stream' -H 'Expect:' -T $SIXTEEN "$u" &
      done
      wait $(jobs -p | grep -v "^$P$") 2>/dev/null
      local full=0; for u in "${us[@]}"; do
        [ "$(curl -s -I -H 'Tus-Resumable: 1.0.0' "$u" | tr -d '\r' | awk 'tolower($1)=="upload-offset:"{print $2}')" = 16777216 ] && full=$((full + 1))
      done
      out="$full/64 complete in $(echo "$(date +%s.%N) - $s0" | bc) s" ;;
    post)
      printf '%s\n' 'function init(args) req = wrk.format("POST", nil, {["Tus-Resumable"] = "1.0.0", ["Upload-Length"] = "1024"}, "") end' \
        'function request() return req end' > "$d/post.lua"
      t0=$(ticks $P)
      out="$(timeout 30 wrk -t1 -c16 -d5s -s "$d/post.lua" "$url" | awk '/Requests\/sec/{print $2}') req/s" ;;
    head)
      local u; u=$(post 16)
      curl -s -o /dev/null -X PATCH -H 'Tus-Resumable: 1.0.0' -H 'Upload-Offset: 0' \
        -H 'Content-Type: application/offset+octet-stream' --data-binary 0123456789abcdef "$u"
      sleep 0.5; t0=$(ticks $P)
      out="$(timeout 60 hey -n 150000 -c 16 -cpus 1 -m HEAD -H 'Tus-Resumable: 1.0.0' "$u" | awk '/Requests\/sec/{print $2}') req/s" ;;
    *) echo "unknown workload $KIND (single|chunks|small|concurrent|post|head)" >&2; kill $P; exit 2 ;;
  esac
  t1=$(ticks $P)
  echo "$2: $out, server CPU $(( (t1 - t0) * 10 )) ms, peak RSS $(awk '/VmHWM/{print int($2/1024)}' /proc/$P/status) MiB"
  kill $P; wait $P 2>/dev/null
  rm -rf "$d"
}

for i in $(seq "$PAIRS"); do
  if [ $((i % 2)) = 1 ]; then one "$A" A; one "$B" B; else one "$B" B; one "$A" A; fi
done
