#!/bin/bash
# usage: PEERLOAD=… perfrun.sh MAILWIRE OUTPREFIX
# The sitting's fan-out at 1,000 pub/s for 20 s; 4 s in, runs $PERFCMD (default: perf record
# -e cpu-clock -g of the server for 10 s; $SPID is the server's pid). Prints the rate's row.
MW=$1; OUT=$2
D=$(mktemp -d)
$MW serve --http-addr 127.0.0.1:28080 --smtp-addr '' --data-dir $D/data --admin-token bench-admin-token \
  --ws-max-conns-per-account 10 --http-max-conns-per-ip 0 --log-level warn > $D/log 2>&1 & SPID=$!
for i in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:28080/readyz && break; sleep 0.1; done
${PEERLOAD:?set PEERLOAD to the peerload binary} -target mailwire -admin-token bench-admin-token -ws ws://127.0.0.1:28080/v1/ws -api http://127.0.0.1:28080 \
  -metrics http://127.0.0.1:28080/metrics -server-pid $SPID -mode fanout -n 15000 -channels 1500 -rates 1000 -duration 20s -settle 3s > $OUT.out 2> $OUT.err &
PL=$!
for i in $(seq 1 300); do grep -q "fanout: rate" $OUT.err 2>/dev/null && break; sleep 0.2; done
sleep 4
if [ -n "${PERFCMD:-}" ]; then eval "$PERFCMD"; else perf record -e cpu-clock -g -p $SPID -o $OUT.perf -- sleep 10 > $OUT.perflog 2>&1; fi
wait $PL; kill $SPID; wait $SPID 2>/dev/null; rm -rf $D
grep '^| 1000' $OUT.out
