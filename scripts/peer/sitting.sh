#!/bin/bash
# usage: CENTRIFUGO=… PEERLOAD=… [MW=bin/mailwire] sitting.sh OUTDIR [ROUNDS]
# The fan-out and idle-memory rows of docs/BENCHMARKS.md (issue 13): Centrifugo and
# mailwire alternated, a fresh server (and data directory) per run; results in OUTDIR.
set -u
. "$(dirname "$0")/lib.sh"
OUT=$1; ROUNDS=${2:-3}; mkdir -p $OUT
MW=${MW:-bin/mailwire}; CFB=${CENTRIFUGO:?set CENTRIFUGO to the binary built per ../shared/PEER-BENCH.md}; PL=${PEERLOAD:?set PEERLOAD to the peerload binary}
SECRET=bench-secret-not-for-production-0123456789abcdef
cf_run() { # label, peerload args...
  local label=$1; shift
  local d=$(mktemp -d); cat > $d/config.json <<J
{ "http_server": { "address": "127.0.0.1", "port": 28000 }, "log": { "level": "warn" },
  "client": { "token": { "hmac_secret_key": "$SECRET" }, "allowed_origins": [] },
  "channel": { "without_namespace": { "allow_subscribe_for_client": true } },
  "http_api": { "key": "bench-api-key" }, "prometheus": { "enabled": true }, "usage_stats": { "disabled": true } }
J
  (cd $d && exec $CFB -c config.json > $d/log 2>&1) & local SPID=$!
  waitport http://127.0.0.1:28000/metrics
  echo "== $label centrifugo $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $OUT/summary
  $PL -target centrifugo -ws ws://127.0.0.1:28000/connection/websocket -api http://127.0.0.1:28000/api/publish \
    -metrics http://127.0.0.1:28000/metrics -api-key bench-api-key -secret $SECRET -server-pid $SPID "$@" > $OUT/$label-cf.out 2> $OUT/$label-cf.err
  kill $SPID; wait $SPID 2>/dev/null; rm -rf $d
}
mw_run() {
  local label=$1; shift
  local d=$(mktemp -d)
  mw_start $MW $d 127.0.0.1:28080 '' --ws-max-conns-per-account 10
  echo "== $label mailwire $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $OUT/summary
  $PL $PL_MW -server-pid $SPID "$@" > $OUT/$label-mw.out 2> $OUT/$label-mw.err
  mw_stop $d
}
FAN="-mode fanout -n 15000 -channels 1500 -rates 1000,0 -duration 15s -settle 5s"
for r in $(seq 1 $ROUNDS); do
  cf_run fan$r $FAN
  mw_run fan$r $FAN
done
IDLE="-mode connect -n 15000 -channels 1500 -hold 40s -settle 5s"
cf_run idle15 $IDLE; mw_run idle15 $IDLE
IDLE19="-mode connect -n 19000 -channels 1900 -hold 40s -settle 5s"
cf_run idle19 $IDLE19; mw_run idle19 $IDLE19
echo "== done $(date -u +%T)" | tee -a $OUT/summary
