"""The client of OpenMail's WebSocket guide, as users write it: Python
websockets at its defaults (max_size 1 MiB) and its reconnect loop
(`async for ws in websockets.connect(...)`). It prints one line per
connection, event and close, so a test can follow what it did.

usage: guide_client.py WS_URL API_KEY SECONDS
"""
import asyncio
import json
import sys

import websockets


async def main(url, key, seconds):
    async def run():
        async for ws in websockets.connect(url, extra_headers={"Authorization": "Bearer " + key}):
            print("connected", flush=True)
            try:
                await ws.send(json.dumps({"type": "subscribe"}))
                async for raw in ws:
                    msg = json.loads(raw)
                    if msg.get("type") == "subscribed":
                        print("subscribed", flush=True)
                    elif msg.get("type") == "error":
                        print("error", msg.get("message"), flush=True)
                    elif "event" in msg:
                        truncated = msg["message"].get("truncated", False)
                        print("event", msg["event_id"], len(raw), "truncated" if truncated else "whole", flush=True)
            except websockets.ConnectionClosed as e:
                print("closed", e.code, flush=True)
                continue

    try:
        await asyncio.wait_for(run(), timeout=seconds)
    except asyncio.TimeoutError:
        pass


asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
