#!/bin/bash
# usage: PEERLOAD=… idle.sh MAILWIRE...
# RSS and heap in use per idle subscribed socket (peerload -mode connect, 15,000 sockets).
. "$(dirname "$0")/lib.sh"
PL=${PEERLOAD:?set PEERLOAD to the peerload binary}
for MW in "$@"; do
  D=$(mktemp -d)
  mw_start $MW $D 127.0.0.1:28080 '' --ws-max-conns-per-account 10
  $PL $PL_MW -server-pid $SPID -mode connect -n 15000 -channels 1500 -hold 20s -settle 5s > $D/out 2> $D/err
  echo "$MW $(grep -A2 '^| N' $D/out | tail -1) $(grep -o 'after hold.*' $D/err | grep -o 'bytes/conn=[0-9]*')"
  mw_stop $D
done
