#!/bin/bash
# usage: [MW=bin/mailwire] tools.sh OUTDIR [ROUNDS]
# The outside-tool rows of docs/BENCHMARKS.md: wrk and smtp-source against mailwire (a fresh
# server per figure), smtp-sink as the ceiling of the SMTP conversation. Needs wrk and postfix.
set -u
OUT=$1; ROUNDS=${2:-2}; mkdir -p $OUT; MW=${MW:-bin/mailwire}; HERE=$(dirname "$0")
waitport() { for i in $(seq 1 200); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "not ready $1"; return 1; }
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
start() {
  D=$(mktemp -d)
  $MW serve --http-addr 127.0.0.1:28180 --smtp-addr 127.0.0.1:28125 --data-dir $D/data --admin-token tok \
    --http-max-conns-per-ip 0 --log-level warn > $D/log 2>&1 & SPID=$!
  waitport http://127.0.0.1:28180/readyz
  A=$(curl -s -X POST -H 'Authorization: Bearer tok' -H 'Content-Type: application/json' -d '{"name":"bench"}' http://127.0.0.1:28180/admin/v1/accounts)
  export MW_KEY=$(echo "$A" | python3 -c 'import json,sys; print(json.load(sys.stdin)["apiKey"])')
  I=$(curl -s -X POST -H "Authorization: Bearer $MW_KEY" -H 'Content-Type: application/json' -d '{"mailboxName":"agent"}' http://127.0.0.1:28180/v1/inboxes)
  export MW_INBOX=$(echo "$I" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  C0=$(cpu $SPID)
}
stop() { C1=$(cpu $SPID); echo "server CPU ticks: $((C1-C0))" >> $OUT/$1; kill $SPID; wait $SPID 2>/dev/null; rm -rf $D; }
for r in $(seq 1 $ROUNDS); do
  echo "== round $r $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $OUT/summary
  start; wrk -t2 -c64 -d15s --latency -s $HERE/inbound.lua http://127.0.0.1:28180 > $OUT/wrk$r 2>&1; stop wrk$r
  start; ( time /usr/sbin/smtp-source -c -d -l 1000 -m 20000 -s 32 -f a@example.com -t agent@localhost 127.0.0.1:28125 ) > $OUT/smtpd$r 2>&1; stop smtpd$r
  start; ( time /usr/sbin/smtp-source -c -l 1000 -m 10000 -s 32 -f a@example.com -t agent@localhost 127.0.0.1:28125 ) > $OUT/smtpc$r 2>&1; stop smtpc$r
  /usr/sbin/smtp-sink -u nobody -c 127.0.0.1:28225 256 & SK=$!; sleep 0.5
  ( time /usr/sbin/smtp-source -c -d -l 1000 -m 20000 -s 32 -f a@example.com -t agent@localhost 127.0.0.1:28225 ) > $OUT/sinkd$r 2>&1
  ( time /usr/sbin/smtp-source -c -l 1000 -m 10000 -s 32 -f a@example.com -t agent@localhost 127.0.0.1:28225 ) > $OUT/sinkc$r 2>&1
  kill $SK; wait $SK 2>/dev/null
done
echo "== done $(date -u +%T)" | tee -a $OUT/summary
