#!/usr/bin/env bash
# benches/waiting_finals.sh BIN — issue #12 item 9: how long a partial upload's completing PATCH
# takes while 20,000 final uploads wait on another partial. Needs curl and hey.
BIN=$1; d=$(mktemp -d); $BIN serve --listen 127.0.0.1:0 --data-dir $d/data > $d/log 2>&1 & P=$!
for _ in $(seq 50); do grep -q "listening on" $d/log && break; sleep 0.1; done
base="http://$(grep -o 'listening on http://[^/]*' $d/log | sed 's#.*http://##')"
mk() { curl -s -D - -o /dev/null -X POST -H 'Tus-Resumable: 1.0.0' "$@" $base/files/ | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}'; }
p1=$(mk -H 'Upload-Length: 10' -H 'Upload-Concat: partial'); p2=$(mk -H 'Upload-Length: 10' -H 'Upload-Concat: partial')
hey -n 20000 -c 16 -m POST -H 'Tus-Resumable: 1.0.0' -H "Upload-Concat: final;$p1" $base/files/ | grep -E "\[201\]"
for i in 1 2 3; do
  p=$(mk -H 'Upload-Length: 10' -H 'Upload-Concat: partial')
  curl -s -o /dev/null -w "completing PATCH of another partial: %{http_code} in %{time_total} s\n" -X PATCH -H 'Tus-Resumable: 1.0.0' -H 'Upload-Offset: 0' -H 'Content-Type: application/offset+octet-stream' --data-binary 0123456789 $p
done
kill $P; rm -rf $d
