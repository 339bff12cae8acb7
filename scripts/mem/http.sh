#!/bin/bash
N=$1; shift
# usage: MW=path/to/mailwire http.sh N [extra serve flags...]  (posts $BIG, made by: python3 smtpload.py --write-eml $BIG)
D=$(mktemp -d ${TMPDIR:-/tmp}/h.XXXX)
HP=$(python3 -c "import socket;s=socket.socket();s.bind((\"127.0.0.1\",0));print(s.getsockname()[1])")
${MW:-bin/mailwire} serve --dev --data-dir $D --http-addr 127.0.0.1:$HP --smtp-addr "" --max-message-size 25MiB "$@" > $D/out.log 2> $D/err.log &
PID=$!
for i in $(seq 1 100); do [ -s $D/dev-api-key ] && grep -q 'mailwire ready' $D/err.log && break; sleep 0.2; done
KEY=$(sed -n 1p $D/dev-api-key); INB=$(sed -n 2p $D/dev-api-key)
sleep 1; BASE=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
for i in $(seq 1 $N); do curl -s -o /dev/null -D $D/h.$i -w '%{http_code}\n' -H "Authorization: Bearer $KEY" -H 'Content-Type: message/rfc822' --data-binary @${BIG:-/tmp/mailwire-big.eml} http://127.0.0.1:$HP/v1/inboxes/$INB/inbound & done > $D/codes; wait $(jobs -p | grep -v $PID) 2>/dev/null
sleep 1
HWM=$(awk '/VmHWM/{print $2}' /proc/$PID/status)
echo "HTTP N=$N flags=[$*] codes: $(sort $D/codes | uniq -c | tr '\n' ' ') base=${BASE}kB HWM=${HWM}kB per-msg=$(( (HWM-BASE)/N/1024 ))MiB"
grep -h -i retry-after $D/h.* | sort | uniq -c
kill $PID; wait $PID 2>/dev/null; rm -rf $D
