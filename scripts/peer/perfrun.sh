#!/bin/bash
# usage: PEERLOAD=… perfrun.sh MAILWIRE OUTPREFIX
# The sitting's fan-out at 1,000 pub/s for 20 s; 4 s in, runs $PERFCMD (default: perf record
# -e cpu-clock -g of the server for 10 s; $SPID is the server's pid). Prints the rate's row.
. "$(dirname "$0")/lib.sh"
PL=${PEERLOAD:?set PEERLOAD to the peerload binary}
MW=$1; OUT=$2
D=$(mktemp -d)
mw_start $MW $D 127.0.0.1:28080 '' --ws-max-conns-per-account 10
$PL $PL_MW -server-pid $SPID -mode fanout -n 15000 -channels 1500 -rates 1000 -duration 20s -settle 3s > $OUT.out 2> $OUT.err &
PL_PID=$!
for i in $(seq 1 300); do grep -q "fanout: rate" $OUT.err 2>/dev/null && break; sleep 0.2; done
sleep 4 # into the publishing window
if [ -n "${PERFCMD:-}" ]; then eval "$PERFCMD"; else perf record -e cpu-clock -g -p $SPID -o $OUT.perf -- sleep 10 > $OUT.perflog 2>&1; fi
wait $PL_PID; mw_stop $D
grep '^| 1000' $OUT.out
