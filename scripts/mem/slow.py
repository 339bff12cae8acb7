#!/usr/bin/env python3
"""Slow-consumer memory: N raw WebSockets that subscribe and never read.

usage: MW=path/to/mailwire python3 scripts/mem/slow.py [N] [M] [extra serve flags...]

Starts `mailwire serve --dev` (--ws-max-pending 1MiB and
--ws-max-conns-per-account N unless a flag says otherwise), opens N
WebSockets with a 4 KiB SO_RCVBUF that subscribe and then never read,
posts M events of ~210 KiB through the HTTP inbound API (one at a time),
and samples the server's VmRSS and go_memstats_heap_inuse_bytes
(/metrics) every 50 ms throughout. Prints the baseline (idle server,
connections open), the peaks and their growth per connection, the
slow-consumer closes, and the heap once the connections are gone (after a
forced GC, through /debug/pprof/heap?gc=1 with the admin token). N=0
measures the ingestion alone. Docs: docs/BENCHMARKS.md, "Memory per slow
consumer".

SLOW_DISTINCT=1 gives every connection an inbox of its own and posts the
events to them in turn (no frame is shared: the worst case for memory;
about 22 events per connection close them all at the defaults);
SLOW_UNTIL_CLOSED=1 stops posting once every connection is closed as a
slow consumer (M is then a maximum);
SLOW_VERBOSE=1 prints the server's figures after each event;
SLOW_PPROF=file saves a heap profile taken at the largest backlog
(mailwire_ws_pending_bytes) seen after an event.
"""
import json, os, re, socket, subprocess, sys, tempfile, threading, time, urllib.request

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100
M = int(sys.argv[2]) if len(sys.argv) > 2 else 100
extra = sys.argv[3:]
if not any(a.startswith("--ws-max-pending") for a in extra):
    extra += ["--ws-max-pending", "1MiB"]
if not any(a.startswith("--ws-max-conns-per-account") for a in extra):
    extra += ["--ws-max-conns-per-account", str(max(N, 10))]
MW = os.environ.get("MW", "bin/mailwire")

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

d = tempfile.mkdtemp(prefix="slow.")
port = free_port()
base = f"http://127.0.0.1:{port}"
admin = "slow-admin-token"
srv = subprocess.Popen([MW, "serve", "--dev", "--data-dir", d, "--http-addr", f"127.0.0.1:{port}", "--smtp-addr", "",
                        "--admin-token", admin] + extra,
                       stdout=open(f"{d}/out.log", "w"), stderr=open(f"{d}/err.log", "w"))
for _ in range(200):
    if os.path.exists(f"{d}/dev-api-key") and "mailwire ready" in open(f"{d}/err.log").read():
        break
    time.sleep(0.1)
key, inbox = open(f"{d}/dev-api-key").read().split()[:2]

def rss_kb():
    for line in open(f"/proc/{srv.pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0

def metrics():
    txt = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    out = {}
    for name in ("go_memstats_heap_inuse_bytes", "go_memstats_alloc_bytes", "mailwire_ws_slow_consumers_total",
                 "mailwire_ws_connections", "mailwire_ws_pending_bytes"):
        m = re.search(r"^" + name + r" (\S+)$", txt, re.M)
        out[name] = float(m.group(1)) if m else float("nan")
    return out

def api(method, path, body):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=30).read() or b"null")

inboxes = [inbox]
if os.environ.get("SLOW_DISTINCT"):
    inboxes = [inbox] + [api("POST", "/v1/inboxes", {"mailboxName": f"slow-{i}"})["id"] for i in range(1, N)]

def raw_ws(i):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(("GET /v1/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               f"Authorization: Bearer {key}\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    assert b" 101 " in buf.split(b"\r\n")[0], buf
    payload = b'{"type":"subscribe"}'
    if len(inboxes) > 1:
        payload = json.dumps({"type": "subscribe", "inbox_ids": [inboxes[i]]}).encode()
    mask = b"\x01\x02\x03\x04"
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    buf = buf.split(b"\r\n\r\n", 1)[1]
    while b"subscribed" not in buf:  # the answer; nothing is read after it
        buf += s.recv(4096)
    return s

def post(text, subject, inbox):
    req = urllib.request.Request(f"{base}/v1/inboxes/{inbox}/inbound", method="POST",
                                 data=json.dumps({"from": "a@b.c", "subject": subject, "text": text}).encode(),
                                 headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=30).status

socks = [raw_ws(i) for i in range(N)]
time.sleep(1)
m0, r0 = metrics(), rss_kb()
peak = {"rss": r0, "heap": m0["go_memstats_heap_inuse_bytes"]}
stop = threading.Event()
def sampler():
    while not stop.is_set():
        peak["rss"] = max(peak["rss"], rss_kb())
        try:
            peak["heap"] = max(peak["heap"], metrics()["go_memstats_heap_inuse_bytes"])
        except Exception:
            pass
        time.sleep(0.05)
th = threading.Thread(target=sampler); th.start()
line = "a long line of text, about seventy bytes, to make a big event body.\n"
body = line * (210 * 1024 // len(line))
codes = {}
best = 0.0
for i in range(M):
    t = time.time()
    c = post(body, f"event {i}", inboxes[i % len(inboxes)])
    codes[c] = codes.get(c, 0) + 1
    if os.environ.get("SLOW_UNTIL_CLOSED") and N > 0 and metrics()["mailwire_ws_slow_consumers_total"] >= N:
        break  # every connection is closed: no more events
    mm = metrics() if os.environ.get("SLOW_VERBOSE") or os.environ.get("SLOW_PPROF") else None
    if os.environ.get("SLOW_PPROF") and mm["mailwire_ws_pending_bytes"] > best:
        # A heap profile at the largest backlog seen so far (gc=1: inuse_space is what is live there).
        best = mm["mailwire_ws_pending_bytes"]
        prof = urllib.request.urlopen(urllib.request.Request(base + "/debug/pprof/heap?gc=1",
                                      headers={"Authorization": "Bearer " + admin}), timeout=30).read()
        open(os.environ["SLOW_PPROF"], "wb").write(prof)
    if os.environ.get("SLOW_VERBOSE"):
        print(f"event {i}: {c} in {time.time()-t:.2f}s open={mm['mailwire_ws_connections']:.0f} "
              f"pending={mm['mailwire_ws_pending_bytes']/(1<<20):.1f}MiB heap_inuse={mm['go_memstats_heap_inuse_bytes']/(1<<20):.0f}MiB", file=sys.stderr)
deadline = time.time() + 30
while time.time() < deadline and metrics()["mailwire_ws_connections"] > 0:
    time.sleep(0.2)
time.sleep(1)
stop.set(); th.join()
m1 = metrics()
# The live heap once the connections are gone: a forced GC (gc=1), read back from /metrics.
urllib.request.urlopen(urllib.request.Request(base + "/debug/pprof/heap?gc=1", headers={"Authorization": "Bearer " + admin}), timeout=30).read()
m2 = metrics()
mib = 1 << 20
print(f"N={N} M={M}{' distinct' if len(inboxes) > 1 else ''} flags=[{' '.join(extra)}] events={codes} slow_closes={m1['mailwire_ws_slow_consumers_total']:.0f} "
      f"open_after={m1['mailwire_ws_connections']:.0f}")
print(f"RSS base {r0/1024:.0f} MB peak {peak['rss']/1024:.0f} MB (+{(peak['rss']-r0)/1024/max(N, 1):.2f} MiB/conn); "
      f"heap_inuse base {m0['go_memstats_heap_inuse_bytes']/mib:.1f} MiB peak {peak['heap']/mib:.1f} MiB "
      f"(+{(peak['heap']-m0['go_memstats_heap_inuse_bytes'])/mib/max(N, 1):.2f} MiB/conn); "
      f"after close + GC: alloc {m2['go_memstats_alloc_bytes']/mib:.1f} MiB, heap_inuse {m2['go_memstats_heap_inuse_bytes']/mib:.1f} MiB")
for s in socks:
    s.close()
srv.terminate(); srv.wait()
subprocess.run(["rm", "-rf", d])
