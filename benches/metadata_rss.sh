#!/usr/bin/env bash
# benches/metadata_rss.sh BIN VALUE_BYTES — issue #12 item 4: RSS after 400 POST /v1/assets
# with one metadata value of VALUE_BYTES, and after one 100-asset list page. Needs curl, python3.
BIN=$1; V=$2; d=$(mktemp -d); $BIN serve --listen 127.0.0.1:0 --data-dir $d/data > $d/log 2>&1 & P=$!
for _ in $(seq 50); do grep -q "listening on" $d/log && break; sleep 0.1; done
base="http://$(grep -o 'listening on http://[^/]*' $d/log | sed 's#.*http://##')"
python3 -c "import json;print(json.dumps({'metadata':{'k':'x'*$V}}))" > $d/body.json
r0=$(awk '/VmRSS/{print $2}' /proc/$P/status)
codes=$(for i in $(seq 400); do curl -s -o /dev/null -w '%{http_code}\n' -X POST -H 'Content-Type: application/json' --data-binary @$d/body.json $base/v1/assets; done | sort | uniq -c | tr '\n' ' ')
r1=$(awk '/VmRSS/{print $2}' /proc/$P/status)
sz=$(curl -s -o /dev/null -w '%{size_download} bytes in %{time_total} s' "$base/v1/assets?limit=100")
r2=$(awk '/VmRSS/{print $2}' /proc/$P/status)
echo "$BIN value=$V codes: $codes RSS start $((r0/1024)) MiB, after POSTs $((r1/1024)) MiB, after list $((r2/1024)) MiB; list page $sz"
kill $P; rm -rf $d
