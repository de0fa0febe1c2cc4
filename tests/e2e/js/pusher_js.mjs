// pusher-js 8 (the Node build, which bundles tweetnacl for private-encrypted- channels) against
// Ressonance, with the pusher Node SDK publishing and signing. Usage: node pusher_js.mjs <scenario>

import {
  Inbox,
  app,
  check,
  checkEqual,
  connected,
  disconnect,
  fail,
  main,
  okJson,
  pusherClient,
  recordEvent,
  rnd,
  serverSdk,
  sleep,
  subscribeRecorded,
  subscribed,
  QUIET_MS,
} from './lib.mjs';

const APP = app('1001');
const LIMITED = app('1002');
const DISABLED = app('1003');

const ALICE = { user_id: 'alice', user_info: { name: 'Alice' } };
const BOB = { user_id: 'bob', user_info: { name: 'Bob' } };

/** Members of a pusher-js presence channel as {id: info}. */
function memberMap(members) {
  const out = {};
  members.each((m) => {
    out[m.id] = m.info;
  });
  return out;
}

/** A client that must be refused at connect time with `code`; returns what it saw. */
async function refusedWith(theApp, code) {
  const client = pusherClient(theApp);
  const err = await client.errors.next(
    (e) => e.code === code,
    `a connection error with code ${code}`,
  );
  // pusher-js treats 4000-4099 as "refused": it disconnects and does not retry.
  await client.states.next(
    (s) => s.current === 'disconnected' || s.current === 'failed',
    'the connection to end (disconnected/failed)',
  );
  await sleep(QUIET_MS * 2);
  const states = client.states.all().map((s) => s.current);
  check(!states.includes('connected'), `the connection must never be 'connected'; states: ${states}`);
  const state = client.pusher.connection.state;
  check(
    state === 'disconnected' || state === 'failed',
    `after ${code} pusher-js must stay disconnected (no retry), state is '${state}'; states: ${states}`,
  );
  const otherCodes = client.errors.all((e) => e.code !== code && e.code !== null);
  check(!otherCodes.length, `unexpected other error codes: ${JSON.stringify(otherCodes)}`);
  return { code: err.code, message: err.message, states, state };
}

const scenarios = {
  // Connect, socket id format, a public channel gets what the Node SDK triggers.
  async connect_public() {
    const client = pusherClient(APP);
    const socketId = await connected(client);
    // pusher-js throws on a handshake without activity_timeout; it keeps min(own 120 s, server's).
    const activityTimeout = client.pusher.connection.activityTimeout;
    check(Number.isInteger(activityTimeout) && activityTimeout > 0, `activity_timeout ${activityTimeout}`);

    const name = `orders-${rnd()}`;
    const { events } = await subscribed(client, name);
    const sdk = serverSdk(APP);
    const payload = { id: 42, items: ['a', 'b'], note: 'héllo ✓' };
    checkEqual(await okJson(sdk.trigger(name, 'order-shipped', payload), 'trigger'), {}, 'trigger response');
    const got = await events.next((e) => e.event === 'order-shipped', 'order-shipped');
    checkEqual(got.data, payload, 'event data');
    // Unsubscribe: the server drops the subscription, nothing more arrives.
    client.pusher.unsubscribe(name);
    for (let i = 0; ; i += 1) {
      const info = await okJson(sdk.get({ path: `/channels/${name}` }), 'channel info');
      if (!info.occupied) break;
      check(i < 50, `${name} still occupied after unsubscribe`);
      await sleep(50);
    }
    await okJson(sdk.trigger(name, 'order-shipped', { id: 43 }), 'trigger after unsubscribe');
    await events.none((e) => e.event === 'order-shipped' && e.data.id === 43, 'an event after unsubscribe');
    return { socket_id: socketId, activity_timeout: activityTimeout, data: got.data };
  },

  async private_channel() {
    const client = pusherClient(APP);
    await connected(client);
    const name = `private-orders-${rnd()}`;
    const { events } = await subscribed(client, name);
    await okJson(serverSdk(APP).trigger(name, 'status', { state: 'paid' }), 'trigger');
    const got = await events.next((e) => e.event === 'status', 'status event');
    checkEqual(got.data, { state: 'paid' }, 'private event data');
    return { channel: name, data: got.data };
  },

  // Members are users: member_added for a user's first connection only, member_removed after its
  // last, counts of distinct users, nobody gets its own member_added.
  async presence() {
    const name = `presence-room-${rnd()}`;
    const sdk = serverSdk(APP);
    const a1 = pusherClient(APP, { name: 'alice1', presence: ALICE });
    const b1 = pusherClient(APP, { name: 'bob1', presence: BOB });
    const a2 = pusherClient(APP, { name: 'alice2', presence: ALICE });
    await Promise.all([connected(a1), connected(b1), connected(a2)]);

    const counts = {};
    const A1 = await subscribed(a1, name);
    counts.alice1 = A1.succeeded.count;
    checkEqual(A1.succeeded.count, 1, 'alice1 members.count on subscribe');
    checkEqual(A1.succeeded.me, { id: 'alice', info: { name: 'Alice' } }, 'alice1 members.me');
    checkEqual(memberMap(A1.succeeded), { alice: { name: 'Alice' } }, 'alice1 members');

    const B1 = await subscribed(b1, name);
    counts.bob1 = B1.succeeded.count;
    checkEqual(B1.succeeded.count, 2, 'bob1 members.count (alice, bob)');
    checkEqual(memberMap(B1.succeeded), { alice: { name: 'Alice' }, bob: { name: 'Bob' } }, 'bob1 here');
    const added = await A1.events.next((e) => e.event === 'pusher:member_added', 'member_added bob');
    checkEqual(added.data, { id: 'bob', info: { name: 'Bob' } }, 'member_added for bob');

    // A second connection of alice: no member_added anywhere, count stays at 2 distinct users.
    const A2 = await subscribed(a2, name);
    counts.alice2 = A2.succeeded.count;
    checkEqual(A2.succeeded.count, 2, 'alice2 members.count (distinct users)');
    checkEqual(memberMap(A2.succeeded), { alice: { name: 'Alice' }, bob: { name: 'Bob' } }, 'alice2 here');
    const info = await okJson(
      sdk.get({ path: `/channels/${name}`, params: { info: 'user_count,subscription_count' } }),
      'channel info',
    );
    checkEqual(info.user_count, 2, 'HTTP user_count with alice twice and bob');
    checkEqual(info.subscription_count, 3, 'HTTP subscription_count (connections)');
    const users = await okJson(sdk.get({ path: `/channels/${name}/users` }), 'users');
    checkEqual(users.users.map((u) => u.id).sort(), ['alice', 'bob'], 'HTTP users');

    await Promise.all([
      B1.events.none((e) => e.event === 'pusher:member_added', 'member_added (alice was already there; own join)'),
      A1.events.none((e) => e.event === 'pusher:member_added' && e.data.id === 'alice', 'its own member_added'),
      A2.events.none((e) => e.event === 'pusher:member_added', 'member_added (it joined last)'),
    ]);

    // alice's first connection leaves: she is still present through alice2.
    await disconnect(a1);
    await B1.events.none((e) => e.event === 'pusher:member_removed', 'member_removed while alice2 is still there');
    checkEqual(B1.channel.members.count, 2, 'bob1 members.count after alice1 left');

    // alice's last connection leaves: now she is gone.
    await disconnect(a2);
    const removed = await B1.events.next((e) => e.event === 'pusher:member_removed', 'member_removed alice');
    checkEqual(removed.data, { id: 'alice', info: { name: 'Alice' } }, 'member_removed for alice');
    checkEqual(B1.channel.members.count, 1, 'bob1 members.count after alice left');
    await B1.events.none(
      (e) => e.event === 'pusher:member_removed' && e !== removed,
      'a second member_removed',
    );
    const removedAll = B1.events.all((e) => e.event === 'pusher:member_removed');
    check(removedAll.length === 1, `exactly one member_removed, got ${JSON.stringify(removedAll)}`);
    const after = await okJson(sdk.get({ path: `/channels/${name}`, params: { info: 'user_count' } }), 'info');
    checkEqual(after.user_count, 1, 'HTTP user_count after alice left');
    return {
      counts,
      user_count: info.user_count,
      subscription_count: info.subscription_count,
      member_added: added.data.id,
      member_removed: removed.data.id,
    };
  },

  // End-to-end encryption: the Node SDK encrypts with the master key, the server relays ciphertext,
  // pusher-js decrypts with the shared_secret from the auth answer.
  async encrypted() {
    const client = pusherClient(APP);
    await connected(client);
    const name = `private-encrypted-vault-${rnd()}`;
    const { events } = await subscribed(client, name);
    const secret = { launch: 'codes', n: 7 };
    await okJson(serverSdk(APP).trigger(name, 'launch', secret), 'encrypted trigger');
    const got = await events.next((e) => e.event === 'launch', 'decrypted launch event');
    checkEqual(got.data, secret, 'decrypted data');
    const raw = client.frames.all((f) => f.event === 'launch');
    check(raw.length === 1, 'one raw launch frame');
    const wire = raw[0].data;
    check(
      typeof wire === 'object' && typeof wire.ciphertext === 'string' && typeof wire.nonce === 'string',
      `the wire data must be {ciphertext, nonce}, got ${JSON.stringify(wire)}`,
    );
    check(!JSON.stringify(wire).includes('codes'), 'plaintext must not be on the wire');
    return { data: got.data, wire_keys: Object.keys(wire).sort() };
  },

  // Cache channels: an empty cache → pusher:cache_miss; after a trigger, a new subscriber gets the
  // last event at once (public and private cache channels).
  async cache() {
    const sdk = serverSdk(APP);
    const out = {};
    for (const prefix of ['cache-', 'private-cache-']) {
      const name = `${prefix}prices-${rnd()}`;
      const first = pusherClient(APP, { name: `first ${prefix}` });
      await connected(first);
      const A = await subscribed(first, name);
      const miss = await A.events.next((e) => e.event === 'pusher:cache_miss', 'pusher:cache_miss');
      await okJson(sdk.trigger(name, 'price', { eur: 1.08 }), 'cache trigger');
      const live = await A.events.next((e) => e.event === 'price', 'live price');
      checkEqual(live.data, { eur: 1.08 }, 'live cached-channel event');

      const late = pusherClient(APP, { name: `late ${prefix}` });
      await connected(late);
      const B = await subscribed(late, name);
      const cached = await B.events.next((e) => e.event === 'price', 'the cached last event');
      checkEqual(cached.data, { eur: 1.08 }, 'cached event data');
      await B.events.none((e) => e.event === 'pusher:cache_miss', 'pusher:cache_miss (the cache is full)');
      await A.events.none((e) => e.event === 'price' && e !== live, 'the cached event again');
      out[prefix] = { miss: miss.event, cached: cached.data };
    }
    return out;
  },

  async client_events_private() {
    const name = `private-chat-${rnd()}`;
    const a = pusherClient(APP, { name: 'sender' });
    const b = pusherClient(APP, { name: 'receiver' });
    await Promise.all([connected(a), connected(b)]);
    const A = await subscribed(a, name);
    await subscribed(b, name);
    const inboxB = recordEvent(b, b.pusher.channel(name), 'client-typing');
    const inboxA = recordEvent(a, A.channel, 'client-typing');
    check(A.channel.trigger('client-typing', { name: 'Ada', n: 1 }), 'channel.trigger returned false');
    const got = await inboxB.next(() => true, 'client-typing at the receiver');
    checkEqual(got.data, { name: 'Ada', n: 1 }, 'client event data');
    check(!got.metadata?.user_id, `no user_id on a private channel, got ${JSON.stringify(got.metadata)}`);
    await inboxA.none(() => true, 'its own client event (no echo)');
    const errors = a.errors.all();
    check(!errors.length, `the sender got errors: ${JSON.stringify(errors)}`);
    return { data: got.data, metadata: got.metadata ?? null };
  },

  async client_events_presence() {
    const name = `presence-chat-${rnd()}`;
    const a = pusherClient(APP, { name: 'alice', presence: ALICE });
    const b = pusherClient(APP, { name: 'bob', presence: BOB });
    await Promise.all([connected(a), connected(b)]);
    const A = await subscribed(a, name);
    await subscribed(b, name);
    const inboxB = recordEvent(b, b.pusher.channel(name), 'client-typing');
    const inboxA = recordEvent(a, A.channel, 'client-typing');
    check(A.channel.trigger('client-typing', { typing: true }), 'channel.trigger returned false');
    const got = await inboxB.next(() => true, 'client-typing at bob');
    checkEqual(got.data, { typing: true }, 'presence client event data');
    checkEqual(got.metadata?.user_id, 'alice', 'metadata.user_id of a presence client event');
    await inboxA.none(() => true, 'its own client event (no echo)');
    return { data: got.data, user_id: got.metadata.user_id };
  },

  // App 1002 has client_events = false: pusher:error 4301, the socket stays open, nobody gets it.
  async client_events_disabled() {
    const name = `private-chat-${rnd()}`;
    const a = pusherClient(LIMITED, { name: 'sender' });
    const b = pusherClient(LIMITED, { name: 'receiver' });
    await Promise.all([connected(a), connected(b)]);
    const A = await subscribed(a, name);
    await subscribed(b, name);
    const inboxB = recordEvent(b, b.pusher.channel(name), 'client-typing');
    A.channel.trigger('client-typing', { x: 1 });
    const err = await a.errors.next((e) => e.code === 4301, 'pusher:error 4301');
    await inboxB.none(() => true, 'a rejected client event');
    checkEqual(a.pusher.connection.state, 'connected', 'state after a 4301 (43xx never closes)');
    // The connection still works.
    await okJson(serverSdk(LIMITED).trigger(name, 'ping', { ok: 1 }), 'trigger after 4301');
    await A.events.next((e) => e.event === 'ping', 'an event after the 4301');
    return { code: err.code, message: err.message, state: a.pusher.connection.state };
  },

  // subscription_count = true on app 1001: pusher:subscription_count on every change.
  async subscription_count() {
    const name = `counted-${rnd()}`;
    const a = pusherClient(APP, { name: 'a' });
    const b = pusherClient(APP, { name: 'b' });
    await Promise.all([connected(a), connected(b)]);
    const A = await subscribed(a, name);
    const isCount = (n) => (e) => e.event === 'pusher:subscription_count' && e.data.subscription_count === n;
    await A.events.next(isCount(1), 'subscription_count 1');
    const B = await subscribed(b, name);
    await A.events.next(isCount(2), 'subscription_count 2 at a');
    await B.events.next(isCount(2), 'subscription_count 2 at b');
    checkEqual(A.channel.subscriptionCount, 2, 'channel.subscriptionCount at a');
    b.pusher.unsubscribe(name);
    await A.events.next(isCount(1), 'subscription_count 1 after b left');
    checkEqual(A.channel.subscriptionCount, 1, 'channel.subscriptionCount after b left');
    const counts = A.events.all((e) => e.event === 'pusher:subscription_count').map((e) => e.data.subscription_count);
    return { counts };
  },

  // pusher.signin() with userAuthentication, sendToUser, terminateUserConnections.
  async signin() {
    const userId = `user-${rnd()}`;
    const sdk = serverSdk(APP);
    const signed = pusherClient(APP, { name: 'signed', user: { id: userId, user_info: { name: 'Ada' } } });
    const bystander = pusherClient(APP, { name: 'bystander' });
    await Promise.all([connected(signed), connected(bystander)]);
    const userEvents = recordEvent(signed, signed.pusher.user, 'greet');
    signed.pusher.signin();
    const success = await signed.frames.next((f) => f.event === 'pusher:signin_success', 'pusher:signin_success');
    checkEqual(JSON.parse(success.data.user_data).id, userId, 'signin_success user_data.id');
    await signed.frames.next(
      (f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === `#server-to-user-${userId}`,
      'subscription to #server-to-user-<id>',
    );
    checkEqual(await okJson(sdk.sendToUser(userId, 'greet', { hi: 'Ada' }), 'sendToUser'), {}, 'sendToUser response');
    const greet = await userEvents.next(() => true, 'greet via pusher.user.bind');
    checkEqual(greet.data, { hi: 'Ada' }, 'sendToUser data');

    checkEqual(await okJson(sdk.terminateUserConnections(userId), 'terminateUserConnections'), {}, 'terminate response');
    const left = await signed.states.next(
      (s) => s.previous === 'connected' && s.current !== 'connected',
      'the signed-in connection to be closed',
    );
    const err = await signed.errors.next((e) => e.code !== null, 'the close code of the terminated connection');
    await sleep(QUIET_MS);
    checkEqual(bystander.pusher.connection.state, 'connected', 'a connection that did not sign in stays');
    return { user_id: userId, greet: greet.data, state_after: left.current, close_code: err.code };
  },

  // docs/protocol.md "Subscription errors": the server answers a bad signature with pusher:subscription_error on that
  // channel; the socket stays open and other subscriptions still work.
  async bad_auth() {
    const wrong = serverSdk(APP, { secret: 'not-the-secret' });
    const client = pusherClient(APP, {
      authorize: (socketId, channelName, sdk) =>
        channelName.includes('tampered')
          ? wrong.authorizeChannel(socketId, channelName, channelName.startsWith('presence-') ? ALICE : undefined)
          : sdk.authorizeChannel(socketId, channelName),
    });
    await connected(client);
    const out = {};
    for (const name of [`private-tampered-${rnd()}`, `presence-tampered-${rnd()}`]) {
      const { events } = subscribeRecorded(client, name);
      const first = await events.next(
        (e) => e.event === 'pusher:subscription_error' || e.event === 'pusher:subscription_succeeded',
        `pusher:subscription_error on ${name}`,
      );
      checkEqual(first.event, 'pusher:subscription_error', `result of a bad signature on ${name}`);
      checkEqual(first.data.type, 'AuthError', 'subscription_error type');
      checkEqual(first.data.status, 401, 'subscription_error status');
      check(typeof first.data.error === 'string' && first.data.error, 'subscription_error has an error text');
      out[name.split('-').slice(0, -1).join('-')] = first.data;
    }
    // An invalid channel name: InvalidChannel / 4009 on that channel.
    const bad = 'bad name!';
    const { events: badEvents } = subscribeRecorded(client, bad);
    const invalid = await badEvents.next((e) => e.event === 'pusher:subscription_error', 'subscription_error (invalid name)');
    checkEqual(invalid.data.type, 'InvalidChannel', 'invalid name: type');
    checkEqual(invalid.data.status, 4009, 'invalid name: status');
    out.invalid = invalid.data;
    checkEqual(client.pusher.connection.state, 'connected', 'state after refused subscriptions');
    await subscribed(client, `private-fine-${rnd()}`);
    return out;
  },

  async unknown_key() {
    return refusedWith({ id: '0', key: `no-such-key-${rnd()}`, secret: 'x' }, 4001);
  },

  async disabled_app() {
    return refusedWith(DISABLED, 4003);
  },

  // App 1002 allows 2 connections: the third gets 4004, the first two stay.
  async over_quota() {
    const a = pusherClient(LIMITED, { name: 'first' });
    const b = pusherClient(LIMITED, { name: 'second' });
    await Promise.all([connected(a), connected(b)]);
    const refused = await refusedWith(LIMITED, 4004);
    checkEqual(a.pusher.connection.state, 'connected', 'first connection state');
    checkEqual(b.pusher.connection.state, 'connected', 'second connection state');
    // A slot frees up when one leaves.
    await disconnect(a);
    await sleep(200);
    const c = pusherClient(LIMITED, { name: 'after-a-left' });
    await connected(c);
    return refused;
  },

  // At most max_client_events_per_second (10 by default, app 1001) per socket; the rest are
  // pusher:error 4301 and the socket stays open.
  async client_events_rate_limit() {
    const name = `private-burst-${rnd()}`;
    const a = pusherClient(APP, { name: 'sender' });
    const b = pusherClient(APP, { name: 'receiver' });
    await Promise.all([connected(a), connected(b)]);
    const A = await subscribed(a, name);
    await subscribed(b, name);
    const got = recordEvent(b, b.pusher.channel(name), 'client-burst');
    const sent = 15;
    for (let i = 0; i < sent; i += 1) A.channel.trigger('client-burst', { i });
    await a.errors.next((e) => e.code === 4301, 'pusher:error 4301 for the burst');
    await sleep(QUIET_MS * 2);
    const received = got.all().length;
    const rejectedCount = a.errors.all((e) => e.code === 4301).length;
    check(received >= 1 && received <= 10, `receiver got ${received} of a burst of ${sent}; allowed 1..10`);
    checkEqual(received + rejectedCount, sent, `received (${received}) + 4301s (${rejectedCount}) = sent`);
    const order = got.all().map((e) => e.data.i);
    checkEqual(order, [...order].sort((x, y) => x - y), 'client events arrive in order');
    checkEqual(a.pusher.connection.state, 'connected', 'the sender stays connected');
    return { sent, received, rejected: rejectedCount };
  },

  // Sign-in with a watchlist: pusher.user.watchlist gets online/offline for watched users.
  async watchlist() {
    const watched = `friend-${rnd()}`;
    const watcher = pusherClient(APP, {
      name: 'watcher',
      user: { id: `watcher-${rnd()}`, watchlist: [watched] },
    });
    await connected(watcher);
    const online = new Inbox('watchlist online');
    const offline = new Inbox('watchlist offline');
    watcher.pusher.user.watchlist.bind('online', (e) => online.push(e));
    watcher.pusher.user.watchlist.bind('offline', (e) => offline.push(e));
    watcher.pusher.signin();
    await watcher.frames.next((f) => f.event === 'pusher:signin_success', 'signin_success (watcher)');

    const friend = pusherClient(APP, { name: 'friend', user: { id: watched } });
    await connected(friend);
    friend.pusher.signin();
    await friend.frames.next((f) => f.event === 'pusher:signin_success', 'signin_success (friend)');
    const on = await online.next((e) => e.user_ids?.includes(watched), `online for ${watched}`);
    await disconnect(friend);
    const off = await offline.next((e) => e.user_ids?.includes(watched), `offline for ${watched}`);
    return { online: on.user_ids, offline: off.user_ids };
  },

  // Restart: the server drains with 4200, pusher-js reconnects at once and resubscribes by itself.
  // The pytest side stops the server after READY and starts a new one on the same port.
  async restart_reconnect() {
    const client = pusherClient(APP);
    const firstId = await connected(client);
    const name = `private-restart-${rnd()}`;
    const { events } = await subscribed(client, name);
    console.log(JSON.stringify({ ready: true, channel: name }));
    const err = await client.errors.next((e) => e.code !== null, 'the close code of the drain', 20000);
    await client.states.next((s) => s.previous === 'connected', 'the connection to drop', 20000);
    await client.states.next((s) => s.current === 'connected', 'pusher-js to reconnect', 25000);
    const secondId = client.pusher.connection.socket_id;
    check(secondId !== firstId, 'a new socket_id after the reconnect');
    await client.frames.next(
      (f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === name,
      'pusher-js to resubscribe after the reconnect',
      10000,
    );
    await okJson(serverSdk(APP).trigger(name, 'after-restart', { ok: true }), 'trigger after restart');
    const got = await events.next((e) => e.event === 'after-restart', 'an event after the restart');
    checkEqual(got.data, { ok: true }, 'event after restart');
    const states = client.states.all().map((s) => s.current);
    const timeline = client.states.all().map((s) => `${s.t}ms ${s.current}`);
    return { close_code: err.code, states, timeline, first_socket_id: firstId, second_socket_id: secondId };
  },

  // Presence channel full (app with max_presence_members = 2, no connection limit): LimitReached.
  async presence_full() {
    const theApp = app(process.env.E2E_APP || '1001');
    const name = `presence-full-${rnd()}`;
    const users = ['u1', 'u2', 'u3'].map((id) => pusherClient(theApp, { name: id, presence: { user_id: id, user_info: {} } }));
    await Promise.all(users.map(connected));
    await subscribed(users[0], name);
    await subscribed(users[1], name);
    const { events } = subscribeRecorded(users[2], name);
    const first = await events.next(
      (e) => e.event === 'pusher:subscription_error' || e.event === 'pusher:subscription_succeeded',
      'the third user to be refused',
    );
    checkEqual(first.event, 'pusher:subscription_error', 'third user on a full presence channel');
    checkEqual(first.data.type, 'LimitReached', 'type');
    checkEqual(first.data.status, 4100, 'status');
    checkEqual(users[2].pusher.connection.state, 'connected', 'the refused connection stays open');
    // A second connection of a present user is not a new member.
    const again = pusherClient(theApp, { name: 'u1-again', presence: { user_id: 'u1', user_info: {} } });
    await connected(again);
    const extra = await subscribed(again, name);
    const count = extra.succeeded.count;
    checkEqual(count, 2, 'member count seen by a 2nd connection of u1');
    return { error: first.data, count_seen_by_second_connection: count };
  },
};

main(scenarios);
