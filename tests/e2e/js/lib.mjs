// Shared helpers for the end-to-end scenarios: the real pusher-js / laravel-echo / pusher (Node SDK)
// packages against a running Ressonance.
//
// Every scenario script is `node js/<script>.mjs <scenario>` with the server in the environment:
//   E2E_SERVER='{"host":"127.0.0.1","port":6001,"apps":[{"id":"1001","key":"...","secret":"..."},...]}'
// (the pytest runner in tests/e2e/node_runner.py builds it from tests/support/server.py).
// A scenario prints exactly one JSON line `{"ok":true,"scenario":...}` on success and exits 0; on any
// failure it prints `E2E FAIL: <what was expected, what happened>` plus the frames it saw to stderr
// and exits 1. Every wait is bounded, and a watchdog ends the process if the scenario hangs.

import dns from 'node:dns';
import http from 'node:http';
import crypto from 'node:crypto';
import { isDeepStrictEqual, inspect } from 'node:util';

import Pusher from 'pusher-js';
import PusherServer from 'pusher';

// -- configuration ---------------------------------------------------------------------------------

function loadServer() {
  const raw = process.env.E2E_SERVER;
  if (!raw) {
    console.error('E2E FAIL: E2E_SERVER is not set (JSON {host, port, apps:[{id,key,secret}]})');
    process.exit(2);
  }
  const cfg = JSON.parse(raw);
  if (!cfg.host || !cfg.port || !Array.isArray(cfg.apps)) {
    console.error(`E2E FAIL: E2E_SERVER must have host, port and apps: ${raw}`);
    process.exit(2);
  }
  return cfg;
}

export const SERVER = loadServer();
export const HOST = SERVER.host;
export const PORT = Number(SERVER.port);
export const SCENARIO = process.argv[2] || '';
/** Default bound for a single wait (ms). */
export const WAIT_MS = Number(process.env.E2E_WAIT_MS || 5000);
/** How long to listen for something that must NOT arrive (ms). */
export const QUIET_MS = Number(process.env.E2E_QUIET_MS || 400);
const WATCHDOG_MS = Number(process.env.E2E_WATCHDOG_MS || 35000);

/** The app with this id (or key) from E2E_SERVER. */
export function app(idOrKey) {
  const found = SERVER.apps.find((a) => String(a.id) === String(idOrKey) || a.key === idOrKey);
  if (!found) fail(`no app ${idOrKey} in E2E_SERVER`);
  return found;
}

/** A random suffix so channels of different runs against one server never collide. */
export function rnd() {
  return crypto.randomBytes(5).toString('hex');
}

export const MASTER_KEY_B64 = crypto.randomBytes(32).toString('base64');

// All traffic must stay on the loopback interface: refuse to resolve any other host name.
const realLookup = dns.lookup;
dns.lookup = function guardedLookup(hostname, ...rest) {
  if (hostname === '127.0.0.1' || hostname === 'localhost' || hostname === '::1') {
    return realLookup.call(dns, hostname, ...rest);
  }
  const cb = rest[rest.length - 1];
  const err = new Error(`e2e: refusing to resolve non-loopback host ${hostname}`);
  err.code = 'ENOTFOUND';
  process.nextTick(() => cb(err));
  offLoopback.push(hostname);
  return undefined;
};
const offLoopback = [];

// -- results ---------------------------------------------------------------------------------------

const trail = [];
/** Remember something for the failure report (frames, states). */
export function note(what, value) {
  trail.push(`${what}: ${typeof value === 'string' ? value : JSON.stringify(value)}`);
  if (trail.length > 400) trail.shift();
}

export class E2EFailure extends Error {}

export function fail(message) {
  throw new E2EFailure(message);
}

function report(message) {
  console.error(`E2E FAIL [${SCENARIO}]: ${message}`);
  if (trail.length) {
    console.error('--- what the scenario saw (last 400 entries) ---');
    for (const line of trail) console.error(line);
  }
  process.exit(1);
}

export function check(cond, message) {
  if (!cond) fail(message);
}

export function checkEqual(actual, expected, what) {
  if (!isDeepStrictEqual(actual, expected)) {
    fail(`${what}: expected ${inspect(expected, { depth: 6 })}, got ${inspect(actual, { depth: 6 })}`);
  }
}

/** Run `scenarios[SCENARIO]`, print its result as one JSON line, exit. */
export async function main(scenarios) {
  const fn = scenarios[SCENARIO];
  if (!fn) {
    report(`unknown scenario '${SCENARIO}'; known: ${Object.keys(scenarios).join(', ')}`);
  }
  const watchdog = setTimeout(
    () => report(`scenario did not finish within ${WATCHDOG_MS} ms`),
    WATCHDOG_MS,
  );
  process.on('unhandledRejection', (err) => report(`unhandled rejection: ${err?.stack || err}`));
  process.on('uncaughtException', (err) => report(`uncaught exception: ${err?.stack || err}`));
  try {
    const result = (await fn()) || {};
    cleanup();
    if (offLoopback.length) fail(`a package tried to reach ${offLoopback.join(', ')}`);
    clearTimeout(watchdog);
    process.stdout.write(`${JSON.stringify({ ok: true, scenario: SCENARIO, ...result })}\n`, () =>
      process.exit(0),
    );
  } catch (err) {
    cleanup();
    report(err instanceof E2EFailure ? err.message : err?.stack || String(err));
  }
}

const cleanups = [];
function cleanup() {
  while (cleanups.length) {
    try {
      cleanups.pop()();
    } catch {
      // closing is best effort
    }
  }
}

const started = Date.now();
/** Milliseconds since the script started (for timing notes). */
export function elapsed() {
  return Date.now() - started;
}

// -- waiting ---------------------------------------------------------------------------------------

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new E2EFailure(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Everything that arrived on one listener, in order. `next(pred)` returns the first item not yet
 * taken that matches (already arrived or arriving within the bound); `all(pred)` is the history.
 */
export class Inbox {
  constructor(label) {
    this.label = label;
    this.items = [];
    this.taken = new Set();
    this.waiters = [];
  }

  push(item) {
    this.items.push(item);
    note(this.label, item);
    const index = this.items.length - 1;
    for (const waiter of this.waiters) {
      if (!waiter.done && waiter.pred(item)) {
        waiter.done = true;
        this.taken.add(index);
        waiter.resolve(item);
        break;
      }
    }
    this.waiters = this.waiters.filter((w) => !w.done);
  }

  all(pred = () => true) {
    return this.items.filter(pred);
  }

  next(pred = () => true, what = 'an item', ms = WAIT_MS) {
    const index = this.items.findIndex((item, i) => !this.taken.has(i) && pred(item));
    if (index >= 0) {
      this.taken.add(index);
      return Promise.resolve(this.items[index]);
    }
    const waiter = { pred, done: false };
    const promise = new Promise((resolve) => {
      waiter.resolve = resolve;
    });
    this.waiters.push(waiter);
    return withTimeout(promise, ms, `${what} on ${this.label}`).finally(() => {
      waiter.done = true;
    });
  }

  /** Wait QUIET_MS and fail if anything matching arrived (history included). */
  async none(pred, what, ms = QUIET_MS) {
    await sleep(ms);
    const got = this.all(pred);
    if (got.length) fail(`${this.label} must not receive ${what}, but got ${JSON.stringify(got)}`);
  }
}

// -- server SDK --------------------------------------------------------------------------------------

/** The pusher Node SDK (5.x) pointed at Ressonance. */
export function serverSdk(theApp, overrides = {}) {
  return new PusherServer({
    appId: String(theApp.id),
    key: theApp.key,
    secret: theApp.secret,
    host: HOST,
    port: String(PORT),
    useTLS: false,
    timeout: 5000,
    encryptionMasterKeyBase64: MASTER_KEY_B64,
    ...overrides,
  });
}

/** Await an SDK call that must succeed; return the parsed JSON body. */
export async function okJson(promise, what) {
  let res;
  try {
    res = await withTimeout(promise, WAIT_MS, what);
  } catch (err) {
    if (err instanceof E2EFailure) throw err;
    fail(`${what} failed: status ${err.status}, body ${err.body}, ${err.message} ${err.error || ''}`);
  }
  check(res.status === 200, `${what}: expected status 200, got ${res.status}`);
  const text = await res.text();
  note(`${what} ->`, text);
  try {
    return JSON.parse(text);
  } catch {
    return fail(`${what}: response body is not JSON: ${text}`);
  }
}

/** Await an SDK call that must be rejected by the server; return {status, body}. */
export async function rejected(promise, what) {
  try {
    const res = await withTimeout(promise, WAIT_MS, what);
    const text = await res.text();
    return fail(`${what}: expected an HTTP error, got ${res.status} ${text}`);
  } catch (err) {
    if (err instanceof E2EFailure) throw err;
    check(err.status !== undefined, `${what}: expected an HTTP error status, got ${err.message} ${err.error || ''}`);
    note(`${what} -> ${err.status}`, err.body);
    return { status: err.status, body: err.body };
  }
}

// -- pusher-js clients -------------------------------------------------------------------------------

export const PUSHER_JS_OPTIONS = {
  wsHost: HOST,
  wsPort: PORT,
  forceTLS: false,
  enabledTransports: ['ws'],
  disableStats: true,
  cluster: 'mt1',
};

let clientCount = 0;

/**
 * A pusher-js client. Channel and user auth are computed with the Node SDK in `customHandler`s
 * (what a backend endpoint would answer). Options:
 *   presence: {user_id, user_info} for presence channel_data
 *   user: {id, user_info?, watchlist?} for pusher.signin()
 *   sdk: the server SDK that signs (default: one for this app)
 *   authorize(socketId, channelName, sdk): custom channel auth answer (for bad-auth scenarios)
 */
export function pusherClient(theApp, options = {}) {
  const name = options.name || `client${++clientCount}`;
  const sdk = options.sdk || serverSdk(theApp);
  const authorize =
    options.authorize ||
    ((socketId, channelName) =>
      channelName.startsWith('presence-')
        ? sdk.authorizeChannel(socketId, channelName, options.presence)
        : sdk.authorizeChannel(socketId, channelName));
  const pusher = new Pusher(theApp.key, {
    ...PUSHER_JS_OPTIONS,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        try {
          callback(null, authorize(socketId, channelName, sdk));
        } catch (err) {
          callback(err, null);
        }
      },
    },
    userAuthentication: {
      customHandler: ({ socketId }, callback) => {
        try {
          callback(null, sdk.authenticateUser(socketId, options.user));
        } catch (err) {
          callback(err, null);
        }
      },
    },
    ...(options.pusherOptions || {}),
  });
  const client = {
    name,
    pusher,
    frames: new Inbox(`${name} frame`),
    states: new Inbox(`${name} state`),
    errors: new Inbox(`${name} error`),
  };
  pusher.connection.bind('message', (m) => client.frames.push(m));
  pusher.connection.bind('state_change', (s) => client.states.push({ ...s, t: elapsed() }));
  pusher.connection.bind('error', (e) => client.errors.push(errorSummary(e)));
  cleanups.push(() => pusher.disconnect());
  return client;
}

/** The {code, message, type} inside a pusher-js connection error event. */
export function errorSummary(e) {
  const data = e?.error?.data || e?.data || {};
  return { type: e?.type, innerType: e?.error?.type, code: data.code ?? null, message: data.message ?? null };
}

/** Wait until the client is connected; return its socket_id. */
export async function connected(client) {
  if (client.pusher.connection.state !== 'connected') {
    await client.states.next((s) => s.current === 'connected', `${client.name} to connect`);
  }
  const socketId = client.pusher.connection.socket_id;
  check(/^\d+\.\d+$/.test(socketId), `${client.name}: socket_id '${socketId}' does not match /^\\d+\\.\\d+$/`);
  return socketId;
}

/**
 * Subscribe and record every event of the channel (including pusher:* ones) in an Inbox.
 * Returns {channel, events}; events items are {event, data, metadata}.
 */
export function subscribeRecorded(client, channelName) {
  const channel = client.pusher.subscribe(channelName);
  const events = new Inbox(`${client.name} ${channelName}`);
  channel.bind_global((event, data) => events.push({ event, data }));
  return { channel, events };
}

/** Subscribe, wait for pusher:subscription_succeeded (fail on subscription_error). */
export async function subscribed(client, channelName) {
  const rec = subscribeRecorded(client, channelName);
  const first = await rec.events.next(
    (e) => e.event === 'pusher:subscription_succeeded' || e.event === 'pusher:subscription_error',
    `${client.name} to subscribe to ${channelName}`,
  );
  if (first.event === 'pusher:subscription_error') {
    fail(`${client.name}: subscription to ${channelName} failed: ${JSON.stringify(first.data)}`);
  }
  return { ...rec, succeeded: first.data };
}

/** Listen for one event with metadata (bind passes (data, metadata) for client events). */
export function recordEvent(client, channel, eventName) {
  const inbox = new Inbox(`${client.name} ${channel.name} ${eventName}`);
  channel.bind(eventName, (data, metadata) => inbox.push({ data, metadata }));
  return inbox;
}

export async function disconnect(client) {
  client.pusher.disconnect();
  if (client.pusher.connection.state !== 'disconnected') {
    await client.states.next((s) => s.current === 'disconnected', `${client.name} to disconnect`);
  }
}

// -- a Laravel-like auth endpoint on 127.0.0.1 -------------------------------------------------------

/**
 * A tiny backend with Laravel's routes: POST /broadcasting/auth (socket_id, channel_name; form
 * encoded) and POST /broadcasting/user-auth. The user comes from `Authorization: Bearer <user id>`.
 * `users` maps id -> user_info. Channels whose name contains `forbidden` get 403 (like a failed
 * Gate); channels containing `tampered` get a 200 answer with a wrong signature.
 */
export async function startAuthServer(theApp, users) {
  const sdk = serverSdk(theApp);
  const wrong = serverSdk(theApp, { secret: `${theApp.secret}-wrong` });
  const requests = new Inbox('auth endpoint');
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => {
      body += chunk;
    });
    req.on('end', () => {
      const form = new URLSearchParams(body);
      const userId = (req.headers.authorization || '').replace(/^Bearer /, '');
      const user = users[userId];
      requests.push({ url: req.url, form: Object.fromEntries(form), userId });
      const send = (status, payload) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(payload));
      };
      if (!user) return send(403, { message: 'Unauthenticated.' });
      const socketId = form.get('socket_id');
      if (req.url === '/broadcasting/user-auth') {
        return send(200, sdk.authenticateUser(socketId, { id: userId, user_info: user }));
      }
      if (req.url !== '/broadcasting/auth') return send(404, { message: 'Not Found' });
      const channelName = form.get('channel_name') || '';
      if (channelName.includes('forbidden')) return send(403, { message: 'This action is unauthorized.' });
      const signer = channelName.includes('tampered') ? wrong : sdk;
      if (channelName.startsWith('presence-')) {
        return send(200, signer.authorizeChannel(socketId, channelName, { user_id: userId, user_info: user }));
      }
      return send(200, signer.authorizeChannel(socketId, channelName));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => server.close());
  server.unref();
  return { url: `http://127.0.0.1:${server.address().port}`, requests, sdk };
}
