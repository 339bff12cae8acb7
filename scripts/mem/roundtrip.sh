#!/bin/bash
# usage: MW=path/to/mailwire BIG=message.eml roundtrip.sh   (BIG made by: python3 smtpload.py --write-eml FILE)
# One SMTP (SIZE=) and one HTTP raw post of BIG; kill -9 after both acks, restart, and compare raw
# and attachment x.bin read back through the API with what was sent.
D=$(mktemp -d ${TMPDIR:-/tmp}/e2e.XXXX)
HP=$(python3 -c "import socket;s=socket.socket();s.bind((\"127.0.0.1\",0));print(s.getsockname()[1])")
SP=$(python3 -c "import socket;s=socket.socket();s.bind((\"127.0.0.1\",0));print(s.getsockname()[1])")
${MW:-bin/mailwire} serve --dev --data-dir $D --http-addr 127.0.0.1:$HP --smtp-addr 127.0.0.1:$SP --max-message-size 25MiB > $D/out.log 2> $D/err.log &
PID=$!
for i in $(seq 1 100); do [ -s $D/dev-api-key ] && grep -q 'mailwire ready' $D/err.log && break; sleep 0.2; done
KEY=$(sed -n 1p $D/dev-api-key); INB=$(sed -n 2p $D/dev-api-key)
python3 - $SP "${BIG:-/tmp/mailwire-big.eml}" <<'PY'
import smtplib,sys
s=smtplib.SMTP("127.0.0.1",int(sys.argv[1])); s.ehlo("t"); print(s.sendmail("a@example.com",["agent@localhost"],open(sys.argv[2],"rb").read()) or "smtp ok"); s.quit()
PY
curl -s -o /dev/null -w 'http %{http_code}\n' -H "Authorization: Bearer $KEY" -H 'Content-Type: message/rfc822' --data-binary @${BIG:-/tmp/mailwire-big.eml} http://127.0.0.1:$HP/v1/inboxes/$INB/inbound
kill -9 $PID; wait $PID 2>/dev/null; echo "killed -9 after the acks; restarting"
${MW:-bin/mailwire} serve --dev --data-dir $D --http-addr 127.0.0.1:$HP --smtp-addr 127.0.0.1:$SP --max-message-size 25MiB > $D/out2.log 2> $D/err2.log &
PID=$!
for i in $(seq 1 100); do grep -q 'mailwire ready' $D/err2.log && break; sleep 0.2; done
curl -s -H "Authorization: Bearer $KEY" "http://127.0.0.1:$HP/v1/inboxes/$INB/messages" > $D/list.json
for id in $(python3 -c "import json,sys;d=json.load(open('$D/list.json'));print(' '.join(m['id'] for m in (d.get('messages') or d.get('data') or d.get('items'))))"); do
  curl -s -H "Authorization: Bearer $KEY" http://127.0.0.1:$HP/v1/messages/$id/raw -o $D/raw.$id
  cmp $D/raw.$id ${BIG:-/tmp/mailwire-big.eml} && echo "raw $id identical"
  curl -s -H "Authorization: Bearer $KEY" "http://127.0.0.1:$HP/v1/attachments/$id/x.bin" -o $D/att.$id
  python3 -c "
import base64,re
raw=open('${BIG:-/tmp/mailwire-big.eml}','rb').read()
b=raw.split(b'filename=x.bin\r\n\r\n')[1].split(b'--BB--')[0]
print('attachment $id identical' if base64.b64decode(b)==open('$D/att.$id','rb').read() else 'attachment $id DIFFERS')"
done
kill $PID; wait $PID 2>/dev/null; rm -rf $D
