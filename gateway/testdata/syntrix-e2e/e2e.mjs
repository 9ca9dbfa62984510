// End-to-end test of Streamer's Syntrix-compatible realtime endpoints
// (/realtime/ws and /realtime/sse of `streamer gateway`), driven by
// gateway/syntrix_e2e_test.go. The client below is written for this project
// from the protocol description (docs/SYNTRIX.md): it behaves like
// Syntrix's TypeScript SDK — auth as the first frame, re-subscribe with the
// same ids after every auth_ack, events routed by payload.subId, reconnect
// after a lost connection — without sharing its code.
//
// Protocol with the Go test: this script prints "READY <phase>" when the
// Go side should publish that phase's changes, reads "GO" on stdin to go
// on, and ends with "OK" (exit 0) or "FAIL: …" (exit 1).
import WebSocket from "ws";
import readline from "node:readline";

const base = process.env.GATEWAY; // http://host:port
const token = process.env.TOKEN;
const wsURL = base.replace(/^http/, "ws") + "/realtime/ws";

const fail = (msg) => { console.log("FAIL: " + msg); process.exit(1); };
const assert = (cond, msg) => { if (!cond) fail(msg); };
const eq = (got, want, what) => {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  assert(g === w, `${what}: got ${g}, want ${w}`);
};

const stdin = readline.createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();
async function ready(phase) {
  console.log("READY " + phase);
  const { value } = await lines.next();
  assert(value === "GO", `expected GO after READY ${phase}, got ${value}`);
}

// Realtime is the client: one WebSocket, reconnected when lost.
class Realtime {
  constructor(url, token) {
    this.url = url; this.token = token;
    this.subs = new Map(); // subId → subscribe payload
    this.next = 1;
    this.inbox = []; this.waiters = [];
    this.closedByUs = false;
    this.authed = false;
    this.connects = 0;
  }
  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.on("open", () => {
        this.connects++;
        ws.send(JSON.stringify({ id: "auth-init", type: "auth", payload: { token: this.token } }));
        resolve();
      });
      ws.on("error", reject);
      ws.on("message", (data) => {
        const m = JSON.parse(data.toString());
        if (typeof m.payload === "string") m.payload = JSON.parse(m.payload);
        if (m.type === "auth_ack") {
          this.authed = true;
          for (const [id, payload] of this.subs) this.send({ id, type: "subscribe", payload });
        }
        this.push(m);
      });
      ws.on("close", () => {
        this.authed = false;
        if (!this.closedByUs) setTimeout(() => this.connect().catch(() => {}), 100); // the SDK backs off; one retry is enough here
      });
    });
  }
  send(m) { this.ws.send(JSON.stringify(m)); }
  subscribe(payload) {
    const id = "sub-" + this.next++;
    this.subs.set(id, payload);
    if (this.authed) this.send({ id, type: "subscribe", payload });
    return id;
  }
  unsubscribe(id) {
    this.subs.delete(id);
    this.send({ id: "unsub-" + id, type: "unsubscribe", payload: { id } });
  }
  push(m) {
    const i = this.waiters.findIndex((w) => w.pred(m));
    if (i >= 0) { const [w] = this.waiters.splice(i, 1); clearTimeout(w.timer); w.resolve(m); return; }
    this.inbox.push(m);
  }
  // take resolves with the first message (received or to come) satisfying
  // pred; heartbeats are skipped unless asked for.
  take(what, pred, ms = 10000) {
    const i = this.inbox.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0]);
    return new Promise((resolve) => {
      const timer = setTimeout(() => fail(`timed out waiting for ${what}; received meanwhile: ${JSON.stringify(this.inbox.filter((m) => m.type !== "heartbeat"))}`), ms);
      this.waiters.push({ pred, resolve, timer });
    });
  }
  events(subId, n) {
    const out = [];
    const loop = async () => {
      while (out.length < n) out.push(await this.take(`event ${out.length + 1} of ${n} for ${subId}`, (m) => m.type === "event" && m.payload.subId === subId));
      return out;
    };
    return loop();
  }
  close() { this.closedByUs = true; this.ws.close(); }
}

const summary = (evs) => evs.map((e) => `${e.payload.delta.type} ${e.payload.delta.id}${e.payload.delta.document ? " n=" + e.payload.delta.document.n : ""}`);

// 1. Tokens: in the query string refused; a bad one in the auth message
//    gets Syntrix's code and text; a payload without a token too.
{
  const status = await new Promise((resolve) => {
    const ws = new WebSocket(wsURL + "?access_token=" + token);
    ws.on("unexpected-response", (_req, res) => resolve(res.statusCode));
    ws.on("open", () => resolve("open"));
    ws.on("error", () => {});
  });
  eq(status, 401, "token in the query string");
  const rt = new Realtime(wsURL, "not-a-jwt");
  await rt.connect();
  const e = await rt.take("the bad token's error", (m) => m.type === "error");
  eq([e.id, e.payload.code, e.payload.message], ["auth-init", "unauthorized", "invalid token"], "bad token");
  rt.send({ id: "a2", type: "auth", payload: { tok: "x" } });
  const e2 = await rt.take("the bad payload's error", (m) => m.type === "error" && m.id === "a2");
  eq([e2.payload.code, e2.payload.message], ["invalid_auth", "invalid payload"], "bad auth payload");
  rt.send({ id: "s0", type: "subscribe", payload: { query: { collection: "messages" } } });
  const e3 = await rt.take("subscribe before auth", (m) => m.type === "error" && m.id === "s0");
  eq([e3.payload.code, e3.payload.message], ["unauthorized", "auth required"], "subscribe before auth");
  rt.close();
}

// 2. Auth, subscriptions, snapshot (filtered, at the subscription's
//    position), heartbeats.
const rt = new Realtime(wsURL, token);
await rt.connect();
const ack = await rt.take("auth_ack", (m) => m.type === "auth_ack");
eq(ack.id, "auth-init", "auth_ack echoes the id");
const big = rt.subscribe({ query: { collection: "messages", filters: [{ field: "n", op: ">=", value: 2 }] }, includeData: true, sendSnapshot: true });
const all = rt.subscribe({ query: { collection: "messages", filters: [] }, includeData: false, sendSnapshot: false });
const bad = rt.subscribe({ query: { collection: "messages", filters: [{ field: "n", op: "~", value: 1 }] }, includeData: true, sendSnapshot: false });
await rt.take("subscribe_ack of " + big, (m) => m.type === "subscribe_ack" && m.id === big);
const snap = await rt.take("snapshot of " + big, (m) => m.type === "snapshot" && m.id === big);
eq(snap.payload.subId, big, "snapshot subId");
eq(snap.payload.documents.map((d) => [d.id, d.collection, d.n, d.text, d._id]), [["m2", "messages", 5, "hello", undefined]], "snapshot documents");
await rt.take("subscribe_ack of " + all, (m) => m.type === "subscribe_ack" && m.id === all);
const badErr = await rt.take("the invalid filter's error", (m) => m.type === "error" && m.id === bad);
assert(badErr.payload.message.startsWith("Invalid filter expression: "), "invalid filter message: " + badErr.payload.message);
rt.subs.delete(bad);
await rt.take("a heartbeat", (m) => m.type === "heartbeat");

// 3. Changes: create, leave (a delete for the filtered subscription), delete.
await ready("changes");
eq(summary(await rt.events(big, 2)), ["create messages/m3 n=7", "delete messages/m3 n=1"], "events of " + big);
eq(summary(await rt.events(all, 3)), ["create messages/m3", "update messages/m3", "delete messages/m3"], "events of " + all);

// 4. A lost connection: the client reconnects, authenticates and
//    subscribes again with the same ids; the snapshot comes again.
rt.ws.terminate();
await rt.take("auth_ack after the reconnect", (m) => m.type === "auth_ack");
const again = await rt.take("the snapshot after the reconnect", (m) => m.type === "snapshot" && m.id === big);
eq(again.payload.documents.map((d) => d.id), ["m2"], "snapshot after the reconnect");
await rt.take("subscribe_ack of " + all + " after the reconnect", (m) => m.type === "subscribe_ack" && m.id === all);
eq(rt.connects, 2, "connections");
await ready("reconnected");
eq(summary(await rt.events(big, 1)), ["create messages/m4 n=3"], "after the reconnect, " + big);
eq(summary(await rt.events(all, 1)), ["create messages/m4"], "after the reconnect, " + all);
rt.unsubscribe(all);
await rt.take("unsubscribe_ack", (m) => m.type === "unsubscribe_ack" && m.id === "unsub-" + all);
rt.close();

// 5. SSE: Bearer header, no Origin (Node's fetch sends none), ": connected",
//    then data: envelopes of the subscription "default".
const ctl = new AbortController();
const res = await fetch(base + "/realtime/sse?collection=messages", { headers: { Authorization: "Bearer " + token }, signal: ctl.signal });
eq(res.status, 200, "SSE status");
assert(res.headers.get("content-type").startsWith("text/event-stream"), "SSE content type");
const reader = res.body.getReader();
const decoder = new TextDecoder();
let buf = "";
const blocks = async (want) => {
  const out = [];
  while (out.length < want) {
    const i = buf.indexOf("\n\n");
    if (i >= 0) { out.push(buf.slice(0, i)); buf = buf.slice(i + 2); continue; }
    const { value, done } = await reader.read();
    if (done) fail("SSE stream ended");
    buf += decoder.decode(value, { stream: true });
  }
  return out;
};
eq(await blocks(1), [": connected"], "SSE opening");
await ready("sse");
let data = null;
while (data === null) {
  const [b] = await blocks(1);
  if (b.startsWith("data: ")) data = JSON.parse(b.slice(6));
}
eq([data.type, data.payload.subId, data.payload.delta.type, data.payload.delta.id, data.payload.delta.document.n], ["event", "default", "update", "messages/m4", 9], "SSE event");
ctl.abort();
console.log("OK");
process.exit(0);
