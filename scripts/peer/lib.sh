# Sourced by the scripts in scripts/peer: starting mailwire for a measurement, waiting for it,
# and giving it one account with the inbox "agent". Loopback only.

# waitport URL: wait (≤ 20 s) until URL answers 2xx.
waitport() { for i in $(seq 1 200); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "not ready $1" >&2; return 1; }

# waittcp HOST PORT: wait (≤ 20 s) until something listens there.
waittcp() { for i in $(seq 1 200); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.1; done; echo "not listening $1:$2" >&2; return 1; }

# cpu PID: utime+stime of a process, in clock ticks (1/100 s).
cpu() { awk '{print $14+$15}' /proc/$1/stat; }

# The admin token every script's server gets (peerload's -admin-token).
MW_TOKEN=bench-admin-token

# mw_start BIN DIR HTTP SMTP [serve flags...]: serve with a fresh data directory in DIR, the
# admin token $MW_TOKEN, no per-address cap (the load comes from 127.0.0.1); sets SPID and
# waits for /readyz.
mw_start() {
  local bin=$1 dir=$2 http=$3 smtp=$4; shift 4
  $bin serve --http-addr "$http" --smtp-addr "$smtp" --data-dir "$dir/data" --admin-token $MW_TOKEN \
    --http-max-conns-per-ip 0 --log-level warn "$@" > "$dir/log" 2>&1 &
  SPID=$!
  waitport "http://$http/readyz"
}

# mw_account HTTP: one account with the inbox "agent"; exports MW_KEY and MW_INBOX.
mw_account() {
  local a i
  a=$(curl -s -X POST -H "Authorization: Bearer $MW_TOKEN" -H 'Content-Type: application/json' -d '{"name":"bench"}' "http://$1/admin/v1/accounts")
  export MW_KEY=$(echo "$a" | python3 -c 'import json,sys; print(json.load(sys.stdin)["apiKey"])')
  i=$(curl -s -X POST -H "Authorization: Bearer $MW_KEY" -H 'Content-Type: application/json' -d '{"mailboxName":"agent"}' "http://$1/v1/inboxes")
  export MW_INBOX=$(echo "$i" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
}

# mw_stop DIR: stop the server started by mw_start and remove DIR.
mw_stop() { kill $SPID; wait $SPID 2>/dev/null; rm -rf "$1"; }

# The peerload flags that point it at a mailwire on 127.0.0.1:28080.
PL_MW="-target mailwire -admin-token $MW_TOKEN -ws ws://127.0.0.1:28080/v1/ws -api http://127.0.0.1:28080 -metrics http://127.0.0.1:28080/metrics"
