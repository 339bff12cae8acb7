#!/bin/bash
# usage: smtpab.sh MAILWIRE...
# For each binary in turn (list them alternated): a fresh server, one account with the inbox
# agent, smtp-source -d -s 32 sending 20,000 messages; prints msgs/s and server CPU per message.
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
for MW in "$@"; do
  D=$(mktemp -d)
  $MW serve --http-addr 127.0.0.1:28180 --smtp-addr 127.0.0.1:28125 --data-dir $D/data --admin-token tok --http-max-conns-per-ip 0 --log-level warn > $D/log 2>&1 & SPID=$!
  for i in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:28180/readyz && break; sleep 0.1; done
  A=$(curl -s -X POST -H 'Authorization: Bearer tok' -H 'Content-Type: application/json' -d '{"name":"bench"}' http://127.0.0.1:28180/admin/v1/accounts)
  K=$(echo "$A" | python3 -c 'import json,sys; print(json.load(sys.stdin)["apiKey"])')
  curl -s -o /dev/null -X POST -H "Authorization: Bearer $K" -H 'Content-Type: application/json' -d '{"mailboxName":"agent"}' http://127.0.0.1:28180/v1/inboxes
  C0=$(cpu $SPID); T0=$(date +%s.%N)
  /usr/sbin/smtp-source -d -l 1000 -m 20000 -s 32 -f a@example.com -t agent@localhost 127.0.0.1:28125
  T1=$(date +%s.%N); C1=$(cpu $SPID)
  python3 -c "print('$MW', 'msgs/s %.0f'%(20000/($T1-$T0)), 'server CPU us/msg %.0f'%(($C1-$C0)*10000/20000))"
  kill $SPID; wait $SPID 2>/dev/null; rm -rf $D
done
