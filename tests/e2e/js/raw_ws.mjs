// Raw WebSocket checks with the `ws` package, for what pusher-js never sends (another protocol
// version, no protocol at all) and wire details pusher-js hides (double encoding, ping/pong).
// Usage: node raw_ws.mjs <scenario>

import WebSocket from 'ws';

import { HOST, PORT, Inbox, app, check, checkEqual, main, withTimeout, WAIT_MS } from './lib.mjs';

const APP = app('1001');

/** Open a socket; frames (parsed, with `data` parsed too when it is a JSON string) and the close. */
function open(query, key = APP.key) {
  const url = `ws://${HOST}:${PORT}/app/${key}${query === null ? '' : `?${query}`}`;
  const ws = new WebSocket(url);
  const frames = new Inbox(`raw ${query}`);
  const closed = new Inbox(`raw ${query} close`);
  ws.on('message', (buf, isBinary) => {
    check(!isBinary, 'the server must send text frames only');
    const text = buf.toString('utf8');
    const frame = JSON.parse(text);
    frames.push({ ...frame, raw: text });
  });
  ws.on('close', (code, reason) => closed.push({ code, reason: reason.toString('utf8') }));
  ws.on('error', (err) => closed.push({ code: null, error: err.message }));
  return { ws, url, frames, closed };
}

function parsedData(frame) {
  return typeof frame.data === 'string' ? JSON.parse(frame.data) : frame.data;
}

const scenarios = {
  // protocol=5: pusher:error 4007, then the socket is closed with 4007 (docs/protocol.md, "Error codes", "Protocol version").
  async unsupported_protocol() {
    const conn = open('protocol=5&client=js&version=8.6.0&flash=false');
    const first = await conn.frames.next(() => true, 'the first frame');
    checkEqual(first.event, 'pusher:error', `first frame ${first.raw}`);
    checkEqual(parsedData(first).code, 4007, `error code in ${first.raw}`);
    const close = await conn.closed.next(() => true, 'the close');
    checkEqual(close.code, 4007, `close code (reason '${close.reason}')`);
    const others = conn.frames.all((f) => f !== first);
    check(!others.length, `nothing else before the close: ${JSON.stringify(others)}`);
    return { error: parsedData(first), close };
  },

  // docs/protocol.md "Error codes" on the wire: pusher:error {code} first, then a close with the same code,
  // for an unknown key (4001), a disabled app (4003) and an app over its quota (4004).
  async refusals() {
    const query = 'protocol=7&client=js&version=8.6.0&flash=false';
    const expectRefusal = async (conn, code, what) => {
      const first = await conn.frames.next(() => true, `the first frame (${what})`);
      checkEqual(first.event, 'pusher:error', `${what}: first frame ${first.raw}`);
      checkEqual(parsedData(first).code, code, `${what}: pusher:error code in ${first.raw}`);
      const close = await conn.closed.next(() => true, `the close (${what})`);
      checkEqual(close.code, code, `${what}: close code (reason '${close.reason}')`);
      return { error: parsedData(first), close: close.code };
    };
    const out = {};
    out.unknown_key = await expectRefusal(open(query, 'no-such-key'), 4001, 'unknown key');
    out.disabled = await expectRefusal(open(query, app('1003').key), 4003, 'disabled app');
    const limited = app('1002').key;
    const held = [open(query, limited), open(query, limited)];
    for (const conn of held) {
      const est = await conn.frames.next(() => true, 'connection_established (quota slots)');
      checkEqual(est.event, 'pusher:connection_established', `a connection within the quota: ${est.raw}`);
    }
    out.over_quota = await expectRefusal(open(query, limited), 4004, 'over quota');
    for (const conn of held) conn.ws.close(1000);
    return out;
  },

  // No protocol parameter: accepted like the hosted service does (docs/protocol.md, "Protocol version").
  async missing_protocol() {
    const conn = open(null);
    const first = await conn.frames.next(() => true, 'the first frame');
    checkEqual(first.event, 'pusher:connection_established', `first frame ${first.raw}`);
    check(/^\d+\.\d+$/.test(parsedData(first).socket_id), `socket_id in ${first.raw}`);
    conn.ws.close(1000);
    return { established: parsedData(first) };
  },

  // protocol=7: the handshake's data is a JSON string (double encoding), ping gets pong, a
  // subscription succeeds with a channel-carrying frame.
  async handshake_and_ping() {
    const conn = open('protocol=7&client=js&version=8.6.0&flash=false');
    const first = await conn.frames.next(() => true, 'connection_established');
    checkEqual(first.event, 'pusher:connection_established', `first frame ${first.raw}`);
    checkEqual(typeof first.data, 'string', `connection_established data must be a JSON string: ${first.raw}`);
    const est = JSON.parse(first.data);
    check(Number.isInteger(est.activity_timeout) && est.activity_timeout > 0, `activity_timeout in ${first.raw}`);
    conn.ws.send(JSON.stringify({ event: 'pusher:ping', data: {} }));
    await conn.frames.next((f) => f.event === 'pusher:pong', 'pusher:pong');
    const pong = await withTimeout(
      new Promise((resolve) => {
        conn.ws.once('pong', resolve);
        conn.ws.ping();
      }),
      WAIT_MS,
      'a WebSocket pong frame',
    );
    conn.ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: 'raw-public' } }));
    const ok = await conn.frames.next(
      (f) => f.event === 'pusher_internal:subscription_succeeded',
      'subscription_succeeded',
    );
    checkEqual(ok.channel, 'raw-public', 'subscription_succeeded channel');
    conn.ws.close(1000);
    return { activity_timeout: est.activity_timeout, ws_pong: pong !== undefined };
  },
};

main(scenarios);
