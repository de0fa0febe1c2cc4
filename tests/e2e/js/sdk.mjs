// The pusher Node SDK 5 against every HTTP endpoint of Ressonance, with pusher-js clients checking
// what arrives. Rejections the SDK cannot produce (stale timestamp, body_md5 mismatch, >100
// channels) are built raw with the SDK's own signing Token. Usage: node sdk.mjs <scenario>

import crypto from 'node:crypto';
import http from 'node:http';
import { isDeepStrictEqual } from 'node:util';

import PusherServer from 'pusher';

import {
  HOST,
  PORT,
  app,
  check,
  checkEqual,
  connected,
  QUIET_MS,
  main,
  note,
  okJson,
  pusherClient,
  rejected,
  rnd,
  serverSdk,
  sleep,
  subscribed,
  withTimeout,
  WAIT_MS,
} from './lib.mjs';

const APP = app('1001');
const LIMITED = app('1002');
const DISABLED = app('1003');

const md5 = (s) => crypto.createHash('md5').update(s, 'utf8').digest('hex');

/**
 * A raw, signed HTTP API request, signed like the SDK does (sorted params, `METHOD\nPATH\nquery`,
 * HMAC-SHA256 with the SDK's Token), with knobs to break one thing at a time.
 */
async function rawRequest(theApp, method, path, { body, params = {}, timestamp, md5Of, secret } = {}) {
  const token = new PusherServer.Token(theApp.key, secret || theApp.secret);
  const query = {
    auth_key: theApp.key,
    auth_timestamp: String(timestamp ?? Math.floor(Date.now() / 1000)),
    auth_version: '1.0',
    ...params,
  };
  if (body !== undefined) query.body_md5 = md5(md5Of ?? body);
  const sorted = Object.keys(query)
    .sort()
    .map((k) => `${k.toLowerCase()}=${query[k]}`)
    .join('&');
  const signature = token.sign([method, path, sorted].join('\n'));
  const url = `http://${HOST}:${PORT}${path}?${sorted}&auth_signature=${signature}`;
  const res = await withTimeout(
    fetch(url, {
      method,
      body,
      headers: body !== undefined ? { 'content-type': 'application/json' } : {},
    }),
    WAIT_MS,
    `${method} ${path}`,
  );
  const text = await res.text();
  note(`raw ${method} ${path} -> ${res.status}`, text);
  return { status: res.status, body: text };
}

async function listeners(n, theApp = APP) {
  const clients = [];
  for (let i = 0; i < n; i += 1) clients.push(pusherClient(theApp, { name: `ws${i + 1}` }));
  const ids = await Promise.all(clients.map(connected));
  return clients.map((c, i) => ({ ...c, socketId: ids[i] }));
}

const ev = (name) => (e) => e.event === name;

const scenarios = {
  // POST /events: one channel, several channels, socket_id exclusion, info.
  async trigger() {
    const sdk = serverSdk(APP);
    const [c1, c2] = await listeners(2);
    const chA = `sdk-a-${rnd()}`;
    const chB = `sdk-b-${rnd()}`;
    const a1 = await subscribed(c1, chA);
    const b1 = await subscribed(c1, chB);
    const a2 = await subscribed(c2, chA);

    checkEqual(await okJson(sdk.trigger(chA, 'one', { n: 1 }), 'trigger one channel'), {}, 'trigger response');
    checkEqual((await a1.events.next(ev('one'), 'one at ws1')).data, { n: 1 }, 'ws1 payload');
    checkEqual((await a2.events.next(ev('one'), 'one at ws2')).data, { n: 1 }, 'ws2 payload');

    await okJson(sdk.trigger([chA, chB], 'multi', 'plain text'), 'trigger two channels');
    checkEqual((await a1.events.next(ev('multi'), 'multi on A')).data, 'plain text', 'string data on A');
    checkEqual((await b1.events.next(ev('multi'), 'multi on B')).data, 'plain text', 'string data on B');
    await a2.events.next(ev('multi'), 'multi at ws2');
    await sleep(QUIET_MS);
    checkEqual(a1.events.all(ev('multi')).length, 1, 'ws1 gets a multi-channel event once on A');

    await okJson(sdk.trigger(chA, 'excluded', { x: 1 }, { socket_id: c1.socketId }), 'trigger with socket_id');
    await a2.events.next(ev('excluded'), 'excluded-event at ws2');
    await a1.events.none(ev('excluded'), 'an event triggered with its own socket_id');

    // info on a public and a presence channel.
    const presence = `presence-sdk-${rnd()}`;
    const member = pusherClient(APP, { name: 'member', presence: { user_id: 'u1', user_info: {} } });
    await connected(member);
    await subscribed(member, presence);
    const info = await okJson(
      sdk.trigger([chA, presence], 'with-info', {}, { info: 'subscription_count,user_count' }),
      'trigger with info',
    );
    checkEqual(info.channels?.[chA]?.subscription_count, 2, `subscription_count of ${chA} in ${JSON.stringify(info)}`);
    checkEqual(info.channels?.[presence]?.subscription_count, 1, 'subscription_count of the presence channel');
    checkEqual(info.channels?.[presence]?.user_count, 1, 'user_count of the presence channel');
    check(!('user_count' in info.channels[chA]), `no user_count for a public channel: ${JSON.stringify(info)}`);
    return { info };
  },

  // POST /batch_events, with and without info, with socket_id exclusion.
  async trigger_batch() {
    const sdk = serverSdk(APP);
    const [c1, c2] = await listeners(2);
    const chA = `batch-a-${rnd()}`;
    const chB = `batch-b-${rnd()}`;
    const a1 = await subscribed(c1, chA);
    const b1 = await subscribed(c1, chB);
    const a2 = await subscribed(c2, chA);
    checkEqual(
      await okJson(
        sdk.triggerBatch([
          { channel: chA, name: 'first', data: { i: 1 } },
          { channel: chB, name: 'second', data: { i: 2 } },
        ]),
        'triggerBatch',
      ),
      {},
      'batch response without info',
    );
    checkEqual((await a1.events.next(ev('first'), 'first')).data, { i: 1 }, 'first payload');
    checkEqual((await b1.events.next(ev('second'), 'second')).data, { i: 2 }, 'second payload');
    await a2.events.next(ev('first'), 'first at ws2');

    const withInfo = await okJson(
      sdk.triggerBatch([
        { channel: chA, name: 'third', data: { i: 3 }, socket_id: c1.socketId },
        { channel: chB, name: 'fourth', data: { i: 4 }, info: 'subscription_count' },
      ]),
      'triggerBatch with info',
    );
    checkEqual(withInfo, { batch: [{}, { subscription_count: 1 }] }, 'batch response with info');
    await a2.events.next(ev('third'), 'third at ws2');
    await b1.events.next(ev('fourth'), 'fourth at ws1');
    await a1.events.none(ev('third'), 'a batch event excluded by socket_id');
    return { with_info: withInfo };
  },

  // GET /channels, /channels/{name}, /channels/{name}/users.
  async queries() {
    const sdk = serverSdk(APP);
    const r = rnd();
    const pub = `q-pub-${r}`;
    const presence = `presence-q-${r}`;
    const cache = `cache-q-${r}`;
    const [c1, c2] = await listeners(2);
    await subscribed(c1, pub);
    await subscribed(c2, pub);
    const alice1 = pusherClient(APP, { name: 'alice1', presence: { user_id: 'alice', user_info: { n: 'A' } } });
    const alice2 = pusherClient(APP, { name: 'alice2', presence: { user_id: 'alice', user_info: { n: 'A' } } });
    const bob = pusherClient(APP, { name: 'bob', presence: { user_id: 'bob', user_info: { n: 'B' } } });
    await Promise.all([alice1, alice2, bob].map(connected));
    for (const c of [alice1, alice2, bob]) await subscribed(c, presence);
    const cacheSub = await subscribed(c1, cache);
    await cacheSub.events.next(ev('pusher:cache_miss'), 'cache_miss');
    await okJson(sdk.trigger(cache, 'price', { eur: 2 }), 'cache trigger');

    const get = (path, params) => okJson(sdk.get({ path, params }), `GET ${path} ${JSON.stringify(params || {})}`);
    const all = await get('/channels');
    for (const ch of [pub, presence, cache]) {
      checkEqual(all.channels?.[ch], {}, `GET /channels lists ${ch} as {}`);
    }
    const qPrefix = await get('/channels', { filter_by_prefix: 'q-pub-' });
    check(Object.keys(qPrefix.channels).every((c) => c.startsWith('q-pub-')), `prefix filter: ${JSON.stringify(qPrefix)}`);
    check(pub in qPrefix.channels, 'prefix filter keeps our channel');
    const users = await get('/channels', { filter_by_prefix: 'presence-q-', info: 'user_count' });
    check(Object.keys(users.channels).every((c) => c.startsWith('presence-q-')), `presence filter: ${JSON.stringify(users)}`);
    checkEqual(users.channels[presence], { user_count: 2 }, 'user_count via GET /channels');
    const badInfo = await rejected(sdk.get({ path: '/channels', params: { info: 'user_count' } }), 'info=user_count without presence- prefix');
    checkEqual(badInfo.status, 400, 'info=user_count without filter_by_prefix=presence-');

    checkEqual(
      await get(`/channels/${pub}`, { info: 'subscription_count' }),
      { occupied: true, subscription_count: 2 },
      'public channel info',
    );
    checkEqual(
      await get(`/channels/${presence}`, { info: 'subscription_count,user_count' }),
      { occupied: true, subscription_count: 3, user_count: 2 },
      'presence channel info',
    );
    const cacheInfo = await get(`/channels/${cache}`, { info: 'cache' });
    checkEqual(cacheInfo.occupied, true, 'cache channel occupied');
    checkEqual(cacheInfo.cache?.event, 'price', 'cached event name');
    checkEqual(JSON.parse(cacheInfo.cache?.data), { eur: 2 }, 'cached event data');
    check(Number.isInteger(cacheInfo.cache?.ttl) && cacheInfo.cache.ttl > 0, `cache ttl: ${JSON.stringify(cacheInfo)}`);
    checkEqual(await get(`/channels/empty-${r}`), { occupied: false }, 'an unoccupied channel');
    const wrongType = await rejected(sdk.get({ path: `/channels/${pub}`, params: { info: 'user_count' } }), 'user_count on a public channel');
    checkEqual(wrongType.status, 400, 'user_count on a public channel');

    const members = await get(`/channels/${presence}/users`);
    checkEqual(
      [...members.users].sort((x, y) => x.id.localeCompare(y.id)),
      [{ id: 'alice' }, { id: 'bob' }],
      'GET /channels/{presence}/users',
    );
    const notPresence = await rejected(sdk.get({ path: `/channels/${pub}/users` }), 'users of a public channel');
    checkEqual(notPresence.status, 400, '/users of a public channel');
    return { channels: Object.keys(users.channels).length, cache: cacheInfo.cache, users: members.users };
  },

  // Data up to the app's limit (10 KiB on app 1001) arrives intact; one byte more is 413.
  async large_payload() {
    const sdk = serverSdk(APP);
    const [c1] = await listeners(1);
    const name = `big-${rnd()}`;
    const sub = await subscribed(c1, name);
    // A JSON string data of exactly 10240 bytes: the SDK sends strings as they are.
    const payload = JSON.stringify({ blob: 'é✓x'.repeat(1500) });
    const fill = 10240 - Buffer.byteLength(payload, 'utf8');
    const data = JSON.stringify({ blob: 'é✓x'.repeat(1500), pad: 'p'.repeat(fill - ',"pad":""'.length) });
    checkEqual(Buffer.byteLength(data, 'utf8'), 10240, 'test data size');
    await okJson(sdk.trigger(name, 'big', data), 'trigger 10 KiB');
    const got = await sub.events.next(ev('big'), 'the 10 KiB event');
    checkEqual(JSON.stringify(got.data), data, 'the 10 KiB event arrives byte for byte');
    const over = await rejected(sdk.trigger(name, 'big', `${data}x`), 'trigger 10 KiB + 1 byte');
    checkEqual(over.status, 413, `data one byte over the limit (${over.body})`);
    return { bytes: Buffer.byteLength(data, 'utf8'), over: over.status };
  },

  // The SDK with a keep-alive agent (what busy backends use): many requests over few sockets.
  async keep_alive() {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
    let sockets = 0;
    const create = agent.createConnection.bind(agent);
    agent.createConnection = (...args) => {
      sockets += 1;
      return create(...args);
    };
    const sdk = serverSdk(APP, { agent });
    const [c1] = await listeners(1);
    const name = `ka-${rnd()}`;
    const sub = await subscribed(c1, name);
    const n = 40;
    const bodies = await Promise.all(
      Array.from({ length: n }, (_, i) => okJson(sdk.trigger(name, 'seq', { i }), `keep-alive trigger ${i}`)),
    );
    check(bodies.every((b) => isDeepStrictEqual(b, {})), 'every trigger answered {}');
    const channels = await okJson(sdk.get({ path: '/channels', params: { filter_by_prefix: name } }), 'GET /channels');
    checkEqual(channels, { channels: { [name]: {} } }, 'a GET on a kept-alive socket');
    for (let i = 0; i < n; i += 1) await sub.events.next(ev('seq'), `event ${i}`);
    agent.destroy();
    check(sockets <= 2, `${n + 1} requests should share the agent's 2 sockets, opened ${sockets}`);
    return { requests: n + 1, sockets };
  },

  // sendToUser and terminateUserConnections answer {} even for users with no connection.
  async users_api() {
    const sdk = serverSdk(APP);
    checkEqual(await okJson(sdk.sendToUser(`nobody-${rnd()}`, 'hi', {}), 'sendToUser'), {}, 'sendToUser to nobody');
    checkEqual(
      await okJson(sdk.terminateUserConnections(`nobody-${rnd()}`), 'terminateUserConnections'),
      {},
      'terminate for nobody',
    );
    return {};
  },

  async rejections() {
    const out = {};
    const body = (x) => JSON.stringify(x);

    // Control: the raw signer is right, so the 401s below are about the one thing broken.
    const ok = await rawRequest(APP, 'POST', `/apps/${APP.id}/events`, {
      body: body({ name: 'raw', channels: [`raw-${rnd()}`], data: '{}' }),
    });
    checkEqual(ok.status, 200, `a correct raw signed request (${ok.body})`);
    checkEqual(JSON.parse(ok.body), {}, 'raw trigger response');

    const wrongSecret = await rejected(
      serverSdk(APP, { secret: 'wrong-secret' }).trigger('x', 'e', {}),
      'trigger with a wrong secret',
    );
    checkEqual(wrongSecret.status, 401, `wrong secret (${wrongSecret.body})`);
    out.wrong_secret = wrongSecret;

    const big = await rejected(serverSdk(LIMITED).trigger('x', 'e', 'x'.repeat(2048)), 'trigger 2 KB on app 1002');
    checkEqual(big.status, 413, `data over max_payload_kb (${big.body})`);
    out.too_large = big;

    const unknown = await rejected(
      serverSdk({ id: '999999', key: APP.key, secret: APP.secret }).trigger('x', 'e', {}),
      'trigger on an unknown app id',
    );
    check(unknown.status === 404 || unknown.status === 401, `unknown app id: 404 or 401, got ${unknown.status}`);
    check(unknown.body && unknown.body.length > 2, `unknown app id: a reason in the body, got '${unknown.body}'`);
    out.unknown_app = unknown;

    const disabled = await rejected(serverSdk(DISABLED).trigger('x', 'e', {}), 'trigger on the disabled app');
    checkEqual(disabled.status, 403, `disabled app (${disabled.body})`);
    out.disabled_app = disabled;

    // The SDK itself refuses 101 channels; the server must too.
    const channels = Array.from({ length: 101 }, (_, i) => `many-${i}`);
    let sdkMessage = null;
    try {
      serverSdk(APP).trigger(channels, 'e', {});
    } catch (err) {
      sdkMessage = err.message;
    }
    check(sdkMessage && /100 channels/.test(sdkMessage), `the SDK must refuse 101 channels, got ${sdkMessage}`);
    const many = await rawRequest(APP, 'POST', `/apps/${APP.id}/events`, { body: body({ name: 'e', channels, data: '{}' }) });
    checkEqual(many.status, 400, `101 channels (${many.body})`);
    out.too_many_channels = many;

    const batch = Array.from({ length: 11 }, (_, i) => ({ channel: `b-${i}`, name: 'e', data: '{}' }));
    const bigBatch = await rejected(serverSdk(APP).triggerBatch(batch), 'a batch of 11 events');
    checkEqual(bigBatch.status, 400, `11 batch events (${bigBatch.body})`);
    out.too_many_batch = bigBatch;

    const triggerBody = body({ name: 'e', channels: ['stale'], data: '{}' });
    const now = Math.floor(Date.now() / 1000);
    const stale = await rawRequest(APP, 'POST', `/apps/${APP.id}/events`, { body: triggerBody, timestamp: now - 700 });
    checkEqual(stale.status, 401, `auth_timestamp 700 s old (${stale.body})`);
    out.stale_timestamp = stale;
    const future = await rawRequest(APP, 'POST', `/apps/${APP.id}/events`, { body: triggerBody, timestamp: now + 700 });
    checkEqual(future.status, 401, `auth_timestamp 700 s ahead (${future.body})`);

    const mismatch = await rawRequest(APP, 'POST', `/apps/${APP.id}/events`, {
      body: triggerBody,
      md5Of: body({ name: 'e', channels: ['other'], data: '{}' }),
    });
    checkEqual(mismatch.status, 401, `body_md5 of another body (${mismatch.body})`);
    out.body_md5_mismatch = mismatch;

    const badSig = await rawRequest(APP, 'GET', `/apps/${APP.id}/channels`, { secret: 'nope' });
    checkEqual(badSig.status, 401, `GET with a bad signature (${badSig.body})`);

    for (const [k, v] of Object.entries(out)) {
      check(typeof v.body === 'string' && v.body.length > 2, `${k}: the error response needs a reason, got '${v.body}'`);
    }
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.status]));
  },
};

main(scenarios);
