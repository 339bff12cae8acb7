#!/bin/bash
# usage: PEERLOAD=… heap.sh MAILWIRE...
# Live heap per idle subscribed socket, every allocation sampled (GODEBUG=memprofilerate=1):
# a heap profile before 15,000 sockets connect and one after, the difference per socket, and
# its top entries. Needs go (go tool pprof) and the admin token pprof route.
. "$(dirname "$0")/lib.sh"
PL=${PEERLOAD:?set PEERLOAD to the peerload binary}
heap() { curl -s -H "Authorization: Bearer $MW_TOKEN" 'http://127.0.0.1:28080/debug/pprof/heap?gc=1' > "$1"; }
for MW in "$@"; do
  D=$(mktemp -d)
  GODEBUG=memprofilerate=1 mw_start $MW $D 127.0.0.1:28080 '' --ws-max-conns-per-account 10
  heap $D/h0
  $PL $PL_MW -server-pid $SPID -mode connect -n 15000 -channels 1500 -hold 25s -settle 5s > $D/out 2> $D/err &
  PL_PID=$!
  for i in $(seq 1 300); do grep -q "holding" $D/err 2>/dev/null && break; sleep 0.2; done
  sleep 5 # into the hold: the sockets are subscribed and idle
  heap $D/h1
  T=$(go tool pprof -sample_index=inuse_space -base $D/h0 -top $MW $D/h1 2>/dev/null | grep -o 'of [0-9]*B total' | grep -o '[0-9]*')
  echo "$MW live heap per socket: $((T/15000)) B"
  go tool pprof -sample_index=inuse_space -base $D/h0 -top $MW $D/h1 2>/dev/null | sed -n 6,16p
  wait $PL_PID; mw_stop $D
done
