// Copy-paste clients for the live stream, with this server's URL and the
// signed-in key filled in. Both subscribe to every inbox, print each
// event, resume with last_event_id after a reconnect and stop on 4001.
// The key travels as ?token= so the snippets do not depend on a library
// version's name for extra headers.

import { wsURL } from './tail.js';

export function pythonSnippet(key) {
  return `# pip install websockets
import asyncio
import json

import websockets

URL = ${JSON.stringify(wsURL(key))}


async def main():
    last_event_id = None
    # The iterator reconnects with backoff when the connection fails.
    async for ws in websockets.connect(URL):
        try:
            sub = {"type": "subscribe"}
            if last_event_id:
                sub["last_event_id"] = last_event_id  # replay what we missed
            await ws.send(json.dumps(sub))
            async for raw in ws:
                frame = json.loads(raw)
                if "event" in frame:
                    last_event_id = frame["event_id"]
                    msg = frame["message"]
                    print(frame["event"], frame["event_id"], msg["from"], msg["subject"], flush=True)
                elif frame.get("type") == "error":
                    print("error:", frame["message"], flush=True)
        except websockets.ConnectionClosed as e:
            if e.rcvd is not None and e.rcvd.code == 4001:
                raise SystemExit("unauthorized: check the API key")
            continue


asyncio.run(main())
`;
}

export function nodeSnippet(key) {
  return `// npm install ws
const WebSocket = require("ws");

const URL = ${JSON.stringify(wsURL(key))};
let lastEventId = null;
let delay = 500;

function connect() {
  const ws = new WebSocket(URL);
  ws.on("open", () => {
    const sub = { type: "subscribe" };
    if (lastEventId) sub.last_event_id = lastEventId; // replay what we missed
    ws.send(JSON.stringify(sub));
  });
  ws.on("message", (data) => {
    const frame = JSON.parse(data);
    if (frame.event) {
      lastEventId = frame.event_id;
      console.log(frame.event, frame.event_id, frame.message.from, frame.message.subject);
    } else if (frame.type === "subscribed") {
      delay = 500;
    } else if (frame.type === "error") {
      console.error("error:", frame.message);
    }
  });
  ws.on("close", (code) => {
    if (code === 4001) {
      console.error("unauthorized: check the API key");
      return;
    }
    setTimeout(connect, delay);
    delay = Math.min(delay * 2, 30000);
  });
  ws.on("error", () => {}); // "close" follows
}

connect();
`;
}
