#!/bin/bash
# usage: PEERLOAD=… idle.sh MAILWIRE...  (RSS and heap in use per idle socket, peerload -mode connect)
for MW in "$@"; do
D=$(mktemp -d)
$MW serve --http-addr 127.0.0.1:28080 --smtp-addr '' --data-dir $D/data --admin-token bench-admin-token --ws-max-conns-per-account 10 --http-max-conns-per-ip 0 --log-level warn > $D/log 2>&1 & SPID=$!
for i in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:28080/readyz && break; sleep 0.1; done
${PEERLOAD:?set PEERLOAD to the peerload binary} -target mailwire -admin-token bench-admin-token -ws ws://127.0.0.1:28080/v1/ws -api http://127.0.0.1:28080 -metrics http://127.0.0.1:28080/metrics -server-pid $SPID -mode connect -n 15000 -channels 1500 -hold 20s -settle 5s > $D/out 2> $D/err
echo "$MW $(grep -A2 '^| N' $D/out | tail -1) $(grep -o 'after hold.*' $D/err | grep -o 'bytes/conn=[0-9]*')"
kill $SPID; wait $SPID 2>/dev/null; rm -rf $D
done
