# usage: smtpload.py HOST PORT N attach|text   (N concurrent messages of about 20 MiB)
#        smtpload.py --write-eml FILE         (writes the "attach" message, for http.sh)
import smtplib, sys, threading, time, base64, os
if sys.argv[1] == "--write-eml":
    host, port, n, shape = None, 0, 0, "attach"
else:
    host, port, n, shape = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
size = 20 << 20
if shape == "attach":
    raw = os.urandom(15 << 20)
    b64 = base64.encodebytes(raw)
    msg = (b"From: a@example.com\r\nTo: agent@localhost\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=BB\r\n\r\n--BB\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
           b"--BB\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
           b"Content-Disposition: attachment; filename=x.bin\r\n\r\n" + b64.replace(b"\n", b"\r\n") + b"--BB--\r\n")
else:
    line = b"A line of plain text in a very large mail, nothing special here at all.\r\n"
    body = line * (size // len(line))
    msg = b"From: a@example.com\r\nTo: agent@localhost\r\nSubject: big\r\n\r\n" + body
if host is None:
    open(sys.argv[2], "wb").write(msg)
    sys.exit(0)
print("message bytes", len(msg), flush=True)
res = []
bar = threading.Barrier(n)
def one(i):
    try:
        s = smtplib.SMTP(host, port, timeout=300)
        s.ehlo("t")
        bar.wait()
        t = time.time()
        r = s.sendmail("a@example.com", ["agent@localhost"], msg)
        res.append(("ok", time.time() - t))
        s.quit()
    except Exception as e:
        res.append(("err " + str(e)[:80], 0))
ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
t0 = time.time()
[t.start() for t in ts]; [t.join() for t in ts]
from collections import Counter
print("results", Counter(r[0] for r in res), "wall %.1fs" % (time.time() - t0), flush=True)
