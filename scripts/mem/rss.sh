#!/bin/bash
# usage: MW=path/to/mailwire rss.sh N attach|text [extra serve flags...]
# N concurrent 20 MiB SMTP messages; prints the VmHWM rise per message.
N=$1; SHAPE=$2; shift 2
D=$(mktemp -d ${TMPDIR:-/tmp}/d.XXXX)
HP=$(python3 -c "import socket;s=socket.socket();s.bind((\"127.0.0.1\",0));print(s.getsockname()[1])")
SP=$(python3 -c "import socket;s=socket.socket();s.bind((\"127.0.0.1\",0));print(s.getsockname()[1])")
${MW:-bin/mailwire} serve --dev --data-dir $D --http-addr 127.0.0.1:$HP --smtp-addr 127.0.0.1:$SP --max-message-size 25MiB "$@" > $D/out.log 2> $D/err.log &
PID=$!
for i in $(seq 1 100); do grep -q 'mailwire ready' $D/err.log && break; sleep 0.2; done
sleep 1
BASE=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
# reset peak: write to clear_refs 5 resets VmHWM
echo 5 > /proc/$PID/clear_refs 2>/dev/null
H0=$(awk '/VmHWM/{print $2}' /proc/$PID/status)
( while kill -0 $PID 2>/dev/null; do awk '/VmRSS/{print $2}' /proc/$PID/status; sleep 0.05; done ) > $D/rss.samples &
SAMP=$!
python3 $(dirname "$0")/smtpload.py 127.0.0.1 $SP $N $SHAPE
sleep 1
HWM=$(awk '/VmHWM/{print $2}' /proc/$PID/status)
MAXS=$(sort -n $D/rss.samples | tail -1)
echo "N=$N shape=$SHAPE flags=[$*] baseRSS=${BASE}kB HWM_before=${H0}kB HWM=${HWM}kB maxSampledRSS=${MAXS}kB per-msg=$(( (HWM-BASE)/N/1024 ))MiB"
curl -s 127.0.0.1:$HP/metrics | grep -E 'ingest_memory|smtp_rejected|refused' | grep -v '^#' | head
kill $SAMP 2>/dev/null; kill $PID; wait $PID 2>/dev/null
grep -c . $D/err.log; grep -i -E 'warn|error' $D/err.log | head -3
rm -rf $D
