#!/usr/bin/env python3
"""gen-openapi.py: writes engine/openapi.json, the OpenAPI 3 document served
at GET /v1/openapi.json. Edit the route table here when a route changes;
TestOpenAPIMatchesRoutes fails until the two agree."""
import json, os, re

def ref(n): return {"$ref": "#/components/schemas/" + n}
def arr(s): return {"type": "array", "items": s}
S = {"type": "string"}; NS = {"type": "string", "nullable": True}
I = {"type": "integer"}; B = {"type": "boolean"}
T = {"type": "string", "format": "date-time"}; NT = dict(T, nullable=True)
def obj(props, req=None):
    o = {"type": "object", "properties": props}
    if req: o["required"] = req
    return o
def lst(item): return obj({"data": arr(item), "total": I}, ["data", "total"])

schemas = {
 "Error": obj({"error": S, "message": S}, ["error", "message"]),
 "Inbox": obj({"id": S, "address": S, "mailboxName": S, "displayName": NS, "webhookUrl": NS,
               "webhookSecret": dict(S, description="only in the answer that created the secret"), "createdAt": T},
              ["id", "address", "mailboxName", "displayName", "webhookUrl", "createdAt"]),
 "InboxList": lst(ref("Inbox")),
 "NewInbox": obj({"mailboxName": S, "displayName": S, "webhookUrl": S, "domain": S, "podId": S}, ["mailboxName"]),
 "InboxPatch": obj({"displayName": NS, "webhookUrl": NS}),
 "Secret": obj({"webhookSecret": S}),
 "WebhookTest": obj({"ok": B, "message": S}),
 "AccountWebhook": obj({"url": S, "secret": dict(S, description="only when this call created it")}, ["url"]),
 "AccountWebhookSecret": obj({"secret": S}, ["secret"]),
 "Attachment": obj({"filename": S, "contentType": S, "sizeBytes": I, "url": S}),
 "MessageListItem": obj({"id": S, "inboxId": S, "threadId": S, "rfcMessageId": S, "from": S, "to": S, "cc": arr(S),
                         "subject": S, "attachments": arr(ref("Attachment")), "attachmentsTruncated": B, "receivedAt": T},
                        ["id", "inboxId", "threadId", "rfcMessageId", "from", "to", "cc", "subject", "attachments", "receivedAt"]),
 "MessageList": lst(ref("MessageListItem")),
 "Message": {"allOf": [ref("MessageListItem"), obj({"bodyText": S, "bodyHtml": NS}, ["bodyText", "bodyHtml"])]},
 "JSONInbound": obj({"from": S, "subject": S, "text": S, "html": S, "cc": arr(S), "messageId": S, "inReplyTo": S,
                     "attachments": arr(obj({"filename": S, "contentType": S, "contentBase64": S}, ["filename", "contentBase64"]))}, ["from"]),
 "InboundReply": obj({"messageId": S, "eventId": S, "threadId": S}, ["messageId", "eventId", "threadId"]),
 "EventSummary": obj({"id": S, "type": S, "inboxId": S, "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
                      "deliveredVia": NS, "attempts": I, "nextAttemptAt": NT, "occurredAt": T}),
 "EventList": lst(ref("EventSummary")),
 "Attempt": obj({"n": I, "at": T, "channel": {"type": "string", "enum": ["websocket", "webhook", "none"]}, "ok": B,
                 "httpStatus": I, "error": S, "durationMs": I}),
 "Event": obj({"event": {"type": "object", "description": "the event payload (PROTOCOL.md §5)"}, "status": S, "deliveredVia": NS,
               "attempts": arr(ref("Attempt")), "nextAttemptAt": NT, "ackedAt": NT}),
 "Redelivered": obj({"eventId": S, "status": S}),
 "NewAccount": obj({"name": S}, ["name"]),
 "Account": obj({"id": S, "name": S, "createdAt": T}),
 "AccountList": lst(ref("Account")),
 "CreatedAccount": obj({"id": S, "name": S, "apiKey": S, "keyId": S}),
 "APIKey": obj({"id": S, "createdAt": T, "lastUsedAt": NT, "last4": S}),
 "APIKeyList": lst(ref("APIKey")),
 "CreatedKey": obj({"id": S, "apiKey": S, "accountId": S, "createdAt": T}),
 "Stats": {"type": "object", "description": "operator view figures (docs/API.md, extensions)"},
 "AdminEventList": lst({"type": "object"}),
 "EventPage": obj({"data": arr({"type": "object", "description": "event payloads (PROTOCOL.md §5), oldest first"}), "cursor": S}, ["data", "cursor"]),
 "EventAck": obj({"eventIds": arr(S)}, ["eventIds"]),
 "Thread": obj({"id": S, "subject": S, "isRead": B, "messageCount": I, "lastMessageAt": T}),
 "ThreadList": lst(ref("Thread")),
 "ThreadMessages": obj({"threadId": S, "subject": S, "isRead": B, "data": arr({"allOf": [ref("Message"), obj({"direction": S})]})},
                       ["threadId", "subject", "isRead", "data"]),
 "ThreadPatch": obj({"is_read": B}, ["is_read"]),
 "OK": obj({"ok": B}, ["ok"]),
}

def js(name): return {"content": {"application/json": {"schema": ref(name)}}}
def ok(desc, name=None, code="200"):
    r = {"description": desc}
    if name: r.update(js(name))
    return {code: r}
ERR = {"default": dict({"description": "an error (docs/API.md, Errors)"}, **js("Error"))}
PAGE = [{"$ref": "#/components/parameters/limit"}, {"$ref": "#/components/parameters/offset"}]

# (method, path, auth, summary, request schema, responses, query params)
R = [
 ("get", "/healthz", None, "200 while the process runs", None, ok("ok"), []),
 ("get", "/readyz", None, "200 when ready, 503 while draining", None, ok("ready"), []),
 ("get", "/metrics", None, "Prometheus text format", None, {"200": {"description": "metrics", "content": {"text/plain": {"schema": S}}}}, []),
 ("get", "/v1/ws", None, "WebSocket upgrade (PROTOCOL.md); the key in Authorization or ?token=", None, {"101": {"description": "switching protocols"}}, [{"name": "token", "in": "query", "schema": S}]),
 ("get", "/console", None, "the web console", None, {"200": {"description": "HTML", "content": {"text/html": {"schema": S}}}}, []),
 ("get", "/console/{file}", None, "a console asset", None, ok("the file"), []),
 ("get", "/v1/openapi.json", "key", "this document", None, ok("OpenAPI 3 document"), []),
 ("post", "/v1/inboxes", "key", "create an inbox", "NewInbox", ok("created", "Inbox", "201"), []),
 ("get", "/v1/inboxes", "key", "list inboxes", None, ok("inboxes", "InboxList"), PAGE),
 ("get", "/v1/inboxes/{id}", "key", "an inbox", None, ok("inbox", "Inbox"), []),
 ("patch", "/v1/inboxes/{id}", "key", "change an inbox", "InboxPatch", ok("inbox", "Inbox"), []),
 ("delete", "/v1/inboxes/{id}", "key", "delete an inbox, its messages and events", None, {"204": {"description": "deleted"}}, []),
 ("post", "/v1/inboxes/{id}/webhook/rotate-secret", "key", "new webhook secret", None, ok("secret", "Secret"), []),
 ("post", "/v1/inboxes/{id}/webhook/test", "key", "send a signed test event", None, ok("answered 2xx", "WebhookTest"), []),
 ("post", "/v1/inboxes/{id}/inbound", "key", "inbound message (raw or JSON); Idempotency-Key makes retries safe", "inbound",
  ok("durably stored", "InboundReply", "202"), [{"name": "Idempotency-Key", "in": "header", "schema": S}]),
 ("get", "/v1/inboxes/{id}/messages", "key", "list messages, newest first, without bodies", None, ok("messages", "MessageList"), PAGE),
 ("get", "/v1/webhook", "key", "the account webhook", None, ok("webhook", "AccountWebhook"), []),
 ("put", "/v1/webhook", "key", "set the account webhook", "AccountWebhook", ok("webhook", "AccountWebhook"), []),
 ("delete", "/v1/webhook", "key", "remove the account webhook", None, {"204": {"description": "removed"}}, []),
 ("post", "/v1/webhook/rotate-secret", "key", "new account webhook secret", None, ok("secret", "AccountWebhookSecret"), []),
 ("get", "/v1/messages/{id}", "key", "a message with its bodies", None, ok("message", "Message"), []),
 ("get", "/v1/messages/{id}/raw", "key", "the original RFC 5322 bytes", None, {"200": {"description": "raw", "content": {"message/rfc822": {"schema": dict(S, format="binary")}}}}, []),
 ("get", "/v1/attachments/{messageId}/{filename}", "key", "an attachment's bytes", None, {"200": {"description": "bytes", "content": {"application/octet-stream": {"schema": dict(S, format="binary")}}}}, []),
 ("get", "/v1/events", "key", "list events, newest first", None, ok("events", "EventList"),
  PAGE + [{"name": "inboxId", "in": "query", "schema": S}, {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["pending", "delivered", "failed"]}}]),
 ("get", "/v1/events/{id}", "key", "an event with its attempts", None, ok("event", "Event"), []),
 ("post", "/v1/events/{id}/redeliver", "key", "a new delivery cycle", None, ok("accepted", "Redelivered", "202"), []),
 ("get", "/v1/events/stream", "key", "pull API: events after the cursor in stored order, held up to wait when there are none", None, ok("a page", "EventPage"),
  [{"name": n, "in": "query", "schema": S} for n in ("after", "wait", "inboxId", "types")] + [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}}]),
 ("post", "/v1/events/ack", "key", "acknowledge pulled events: pending ones become delivered", "EventAck", ok("acknowledged", "OK"), []),
 ("get", "/v1/inboxes/{id}/threads", "key", "an inbox's threads", None, ok("threads", "ThreadList"), PAGE + [{"name": "is_read", "in": "query", "schema": B}]),
 ("get", "/v1/threads/{id}/messages", "key", "a thread's messages, oldest first, with their direction", None, ok("messages", "ThreadMessages"), PAGE),
 ("patch", "/v1/threads/{id}", "key", "mark a thread read or unread", "ThreadPatch", ok("done", "OK"), []),
 ("post", "/v1/mcp", "key", "MCP streamable HTTP transport (docs/AGENTS.md)", None, ok("an MCP JSON-RPC answer"), []),
 ("post", "/admin/v1/accounts", "admin", "create an account and its first key", "NewAccount", ok("created", "CreatedAccount", "201"), []),
 ("get", "/admin/v1/accounts", "admin", "list accounts", None, ok("accounts", "AccountList"), PAGE),
 ("get", "/admin/v1/accounts/{id}/api-keys", "admin", "an account's keys (never the key)", None, ok("keys", "APIKeyList"), []),
 ("post", "/admin/v1/accounts/{id}/api-keys", "admin", "a new key", None, ok("created", "CreatedKey", "201"), []),
 ("delete", "/admin/v1/api-keys/{keyId}", "admin", "revoke a key (its WebSockets close with 4001)", None, {"204": {"description": "revoked"}}, []),
 ("get", "/admin/v1/stats", "admin", "operator figures (extension)", None, ok("stats", "Stats"), [{"name": "window", "in": "query", "schema": S}]),
 ("get", "/admin/v1/events", "admin", "events across accounts (extension)", None, ok("events", "AdminEventList"),
  PAGE + [{"name": "accountId", "in": "query", "schema": S}, {"name": "status", "in": "query", "schema": S}]),
 ("get", "/debug/pprof/{name}", "admin", "Go profiles", None, ok("profile"), []),
]

paths = {}
for method, path, auth, summary, body, resps, qps in R:
    op = {"summary": summary, "operationId": method + re.sub(r"[^A-Za-z0-9]+", "_", path).rstrip("_"), "responses": dict(resps, **ERR)}
    params = [{"name": n, "in": "path", "required": True, "schema": S} for n in re.findall(r"\{(\w+)\}", path)] + qps
    if params: op["parameters"] = params
    if auth == "key": op["security"] = [{"apiKey": []}]
    elif auth == "admin": op["security"] = [{"adminToken": []}]
    else: op["security"] = []
    if body == "inbound":
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref("JSONInbound")},
                                                           "message/rfc822": {"schema": dict(S, format="binary")}}}
    elif body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(body)}}}
    paths.setdefault(path, {})[method] = op

doc = {
 "openapi": "3.0.3",
 "info": {"title": "mailwire HTTP API", "version": "1",
          "description": "Control plane and ingest of mailwire (docs/API.md). JSON in and out; errors are {\"error\",\"message\"}."},
 "paths": paths,
 "components": {
   "schemas": schemas,
   "parameters": {"limit": {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
                  "offset": {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}}},
   "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "an API key (om_…)"},
                       "adminToken": {"type": "http", "scheme": "bearer", "description": "the server's admin token"}}},
 "security": [{"apiKey": []}],
}
out = os.path.join(os.path.dirname(__file__), "..", "engine", "openapi.json")
with open(out, "w") as f:
    json.dump(doc, f, indent=1, ensure_ascii=False)
    f.write("\n")
