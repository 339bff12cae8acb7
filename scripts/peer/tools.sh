#!/bin/bash
# usage: [MW=bin/mailwire] tools.sh OUTDIR [ROUNDS]
# The outside-tool rows of docs/BENCHMARKS.md: wrk and smtp-source against mailwire (a fresh
# server per figure), smtp-sink as the ceiling of the SMTP conversation. Needs wrk and postfix.
set -u
HERE=$(dirname "$0"); . "$HERE/lib.sh"
OUT=$1; ROUNDS=${2:-2}; mkdir -p $OUT; MW=${MW:-bin/mailwire}
start() { D=$(mktemp -d); mw_start $MW $D 127.0.0.1:28180 127.0.0.1:28125; mw_account 127.0.0.1:28180; C0=$(cpu $SPID); }
stop() { echo "server CPU ticks: $(($(cpu $SPID)-C0))" >> $OUT/$1; mw_stop $D; }
for r in $(seq 1 $ROUNDS); do
  echo "== round $r $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $OUT/summary
  start; wrk -t2 -c64 -d15s --latency -s $HERE/inbound.lua http://127.0.0.1:28180 > $OUT/wrk$r 2>&1; stop wrk$r
  start; ( time /usr/sbin/smtp-source -c -d -l 1000 -m 20000 -s 32 -f a@example.com -t agent@localhost 127.0.0.1:28125 ) > $OUT/smtpd$r 2>&1; stop smtpd$r
  start; ( time /usr/sbin/smtp-source -c -l 1000 -m 10000 -s 32 -f a@example.com -t agent@localhost 127.0.0.1:28125 ) > $OUT/smtpc$r 2>&1; stop smtpc$r
  /usr/sbin/smtp-sink -u nobody -c 127.0.0.1:28225 256 & SK=$!
  waittcp 127.0.0.1 28225
  ( time /usr/sbin/smtp-source -c -d -l 1000 -m 20000 -s 32 -f a@example.com -t agent@localhost 127.0.0.1:28225 ) > $OUT/sinkd$r 2>&1
  ( time /usr/sbin/smtp-source -c -l 1000 -m 10000 -s 32 -f a@example.com -t agent@localhost 127.0.0.1:28225 ) > $OUT/sinkc$r 2>&1
  kill $SK; wait $SK 2>/dev/null
done
echo "== done $(date -u +%T)" | tee -a $OUT/summary
