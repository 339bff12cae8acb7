#!/bin/bash
# usage: PEERLOAD=… heap.sh MAILWIRE...
# Live heap per idle subscribed socket, every allocation sampled (GODEBUG=memprofilerate=1):
# a heap profile before 15,000 sockets connect and one after, the difference per socket, and
# its top entries. Needs go (go tool pprof) and the admin token pprof route.
for MW in "$@"; do
D=$(mktemp -d)
GODEBUG=memprofilerate=1 $MW serve --http-addr 127.0.0.1:28080 --smtp-addr '' --data-dir $D/data --admin-token bench-admin-token --ws-max-conns-per-account 10 --http-max-conns-per-ip 0 --log-level warn > $D/log 2>&1 & SPID=$!
for i in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:28080/readyz && break; sleep 0.1; done
curl -s -H 'Authorization: Bearer bench-admin-token' 'http://127.0.0.1:28080/debug/pprof/heap?gc=1' > $D/h0
${PEERLOAD:?set PEERLOAD to the peerload binary} -target mailwire -admin-token bench-admin-token -ws ws://127.0.0.1:28080/v1/ws -api http://127.0.0.1:28080 -metrics http://127.0.0.1:28080/metrics -server-pid $SPID -mode connect -n 15000 -channels 1500 -hold 25s -settle 5s > $D/out 2> $D/err &
PL=$!
for i in $(seq 1 300); do grep -q "holding" $D/err 2>/dev/null && break; sleep 0.2; done
sleep 5
curl -s -H 'Authorization: Bearer bench-admin-token' 'http://127.0.0.1:28080/debug/pprof/heap?gc=1' > $D/h1
T=$(go tool pprof -sample_index=inuse_space -base $D/h0 -top $MW $D/h1 2>/dev/null | grep -o 'of [0-9]*B total' | grep -o '[0-9]*')
echo "$MW live heap per socket: $((T/15000)) B"
go tool pprof -sample_index=inuse_space -base $D/h0 -top $MW $D/h1 2>/dev/null | sed -n 6,16p
wait $PL; kill $SPID; wait $SPID 2>/dev/null; rm -rf $D
done
