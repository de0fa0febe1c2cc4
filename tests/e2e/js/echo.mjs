// Laravel Echo 2 (broadcaster 'pusher' or 'reverb', both pusher-js underneath) against Ressonance,
// configured the way docs/laravel.md tells Laravel users to, with a Laravel-like auth backend
// (POST /broadcasting/auth, Bearer token = user) on 127.0.0.1 and the Node SDK standing in for
// Laravel's broadcaster. Usage: node echo.mjs <scenario> <pusher|reverb>

import Echo from 'laravel-echo';
import Pusher from 'pusher-js';

import {
  HOST,
  PORT,
  Inbox,
  app,
  check,
  checkEqual,
  fail,
  main,
  note,
  okJson,
  rnd,
  startAuthServer,
  withTimeout,
  WAIT_MS,
} from './lib.mjs';

const BROADCASTER = process.argv[3] || 'pusher';
if (!['pusher', 'reverb'].includes(BROADCASTER)) {
  console.error(`E2E FAIL: broadcaster must be pusher or reverb, got ${BROADCASTER}`);
  process.exit(2);
}

const APP = app('1001');
const USERS = {
  1: { id: 1, name: 'Taylor' },
  2: { id: 2, name: 'Abigail' },
};

// `resources/js/echo.js` as docs/laravel.md has it, for each broadcaster.
function echoFor(auth, userId) {
  const common = {
    key: APP.key,
    wsHost: HOST,
    wsPort: PORT,
    wssPort: PORT,
    forceTLS: false,
    enabledTransports: ['ws', 'wss'],
    authEndpoint: `${auth.url}/broadcasting/auth`,
    // One `auth` object per instance: Echo writes the bearer header into it.
    auth: { headers: {} },
    userAuthentication: { endpoint: `${auth.url}/broadcasting/user-auth`, headers: {} },
    bearerToken: String(userId),
    Pusher,
  };
  const options =
    BROADCASTER === 'pusher'
      ? { broadcaster: 'pusher', cluster: 'mt1', disableStats: true, ...common }
      : { broadcaster: 'reverb', ...common };
  const echo = new Echo(options);
  const pusher = echo.connector.pusher;
  const name = `echo(user ${userId})`;
  const errors = new Inbox(`${name} connection error`);
  pusher.connection.bind('error', (e) => errors.push(e));
  pusher.connection.bind('message', (m) => note(`${name} frame`, m));
  cleanups.push(() => echo.disconnect());
  return { echo, pusher, name, errors };
}

const cleanups = [];
process.on('exit', () => {
  for (const fn of cleanups) {
    try {
      fn();
    } catch {
      // best effort
    }
  }
});

async function connected(client) {
  const { pusher } = client;
  if (pusher.connection.state !== 'connected') {
    await withTimeout(
      new Promise((resolve) => pusher.connection.bind('connected', resolve)),
      WAIT_MS,
      `${client.name} to connect`,
    );
  }
  check(/^\d+\.\d+$/.test(client.echo.socketId()), `Echo.socketId() '${client.echo.socketId()}'`);
  checkEqual(client.echo.connectionStatus(), 'connected', 'Echo.connectionStatus()');
}

/** Resolve when an Echo channel's `subscribed()` callback fires; reject on `.error()`. */
function subscribedEcho(channel, what) {
  return withTimeout(
    new Promise((resolve, reject) => {
      channel.subscribed(resolve);
      channel.error((err) => reject(new Error(`${what}: subscription_error ${JSON.stringify(err)}`)));
    }),
    WAIT_MS,
    `${what} to be subscribed`,
  );
}

function inboxOf(label) {
  return new Inbox(label);
}

const scenarios = {
  // Echo.channel().listen() with Laravel's event class names and a broadcastAs() custom name.
  async listen() {
    const auth = await startAuthServer(APP, USERS);
    const client = echoFor(auth, 1);
    await connected(client);
    const name = `orders.${rnd()}`;
    const shipped = inboxOf('OrderShipped');
    const custom = inboxOf('.order.status');
    const channel = client.echo.channel(name);
    channel.listen('OrderShipped', (e) => shipped.push(e)).listen('.order.status', (e) => custom.push(e));
    await subscribedEcho(channel, name);
    // What Laravel's PusherBroadcaster sends for App\Events\OrderShipped and for broadcastAs().
    await okJson(auth.sdk.trigger(name, 'App\\Events\\OrderShipped', { order: { id: 7 } }), 'trigger class');
    await okJson(auth.sdk.trigger(name, 'order.status', { status: 'shipped' }), 'trigger custom');
    checkEqual((await shipped.next(() => true, 'OrderShipped')), { order: { id: 7 } }, 'OrderShipped payload');
    checkEqual((await custom.next(() => true, '.order.status')), { status: 'shipped' }, 'custom name payload');
    // Echo.leave(): no more events, and the server forgets the subscription.
    client.echo.leave(name);
    await withTimeout(
      (async () => {
        for (;;) {
          const info = await okJson(auth.sdk.get({ path: `/channels/${name}` }), 'channel info');
          if (!info.occupied) return;
          await new Promise((r) => setTimeout(r, 50));
        }
      })(),
      WAIT_MS,
      'the channel to be unoccupied after Echo.leave()',
    );
    await okJson(auth.sdk.trigger(name, 'App\\Events\\OrderShipped', { order: { id: 8 } }), 'trigger after leave');
    await shipped.none((e) => e.order.id === 8, 'an event after Echo.leave()');
    return { broadcaster: BROADCASTER, socket_id: client.echo.socketId() };
  },

  async private() {
    const auth = await startAuthServer(APP, USERS);
    const client = echoFor(auth, 1);
    await connected(client);
    const base = `App.Models.User.${rnd()}`;
    const events = inboxOf('private');
    const channel = client.echo.private(base).listen('.status', (e) => events.push(e));
    await subscribedEcho(channel, `private-${base}`);
    const req = await auth.requests.next((r) => r.url === '/broadcasting/auth', 'the auth request');
    checkEqual(req.form.channel_name, `private-${base}`, 'channel_name posted to /broadcasting/auth');
    checkEqual(req.userId, '1', 'bearer token sent by Echo');
    await okJson(auth.sdk.trigger(`private-${base}`, 'status', { ok: true }), 'trigger');
    checkEqual(await events.next(() => true, '.status'), { ok: true }, 'private payload');
    // Laravel notifications: BroadcastNotificationCreated on the user's private channel.
    const notes = inboxOf('notification');
    channel.notification((n) => notes.push(n));
    const notification = { id: 'a1b2', type: 'App\\Notifications\\InvoicePaid', amount: 10 };
    await okJson(
      auth.sdk.trigger(`private-${base}`, 'Illuminate\\Notifications\\Events\\BroadcastNotificationCreated', notification),
      'trigger notification',
    );
    checkEqual(await notes.next(() => true, '.notification()'), notification, 'notification payload');
    return { broadcaster: BROADCASTER, channel: `private-${base}` };
  },

  // whisper() / listenForWhisper(): client events through Echo, not echoed to the sender.
  async whisper() {
    const auth = await startAuthServer(APP, USERS);
    const a = echoFor(auth, 1);
    const b = echoFor(auth, 2);
    await Promise.all([connected(a), connected(b)]);
    const base = `chat.${rnd()}`;
    const atA = inboxOf('whisper at sender');
    const atB = inboxOf('whisper at receiver');
    const chA = a.echo.private(base).listenForWhisper('typing', (e) => atA.push(e));
    const chB = b.echo.private(base).listenForWhisper('typing', (e) => atB.push(e));
    await Promise.all([subscribedEcho(chA, 'sender'), subscribedEcho(chB, 'receiver')]);
    chA.whisper('typing', { name: 'Taylor' });
    checkEqual(await atB.next(() => true, 'the whisper'), { name: 'Taylor' }, 'whisper payload');
    await atA.none(() => true, 'its own whisper');
    // And on a presence channel (Echo.join().whisper()).
    const room = `room.${rnd()}`;
    const pA = a.echo.join(room);
    const pB = b.echo.join(room);
    const presB = inboxOf('presence whisper');
    pB.listenForWhisper('typing', (e) => presB.push(e));
    await Promise.all([subscribedEcho(pA, 'presence a'), subscribedEcho(pB, 'presence b')]);
    pA.whisper('typing', { in: 'room' });
    checkEqual(await presB.next(() => true, 'presence whisper'), { in: 'room' }, 'presence whisper');
    check(!a.errors.all().length, `sender connection errors: ${JSON.stringify(a.errors.all())}`);
    return { broadcaster: BROADCASTER };
  },

  // join().here().joining().leaving()
  async presence() {
    const auth = await startAuthServer(APP, USERS);
    const a = echoFor(auth, 1);
    const b = echoFor(auth, 2);
    await Promise.all([connected(a), connected(b)]);
    const room = `room.${rnd()}`;
    const hereA = inboxOf('here a');
    const joiningA = inboxOf('joining a');
    const leavingA = inboxOf('leaving a');
    const hereB = inboxOf('here b');
    const joiningB = inboxOf('joining b');
    a.echo
      .join(room)
      .here((users) => hereA.push(users))
      .joining((u) => joiningA.push(u))
      .leaving((u) => leavingA.push(u))
      .error((e) => fail(`join error ${JSON.stringify(e)}`));
    const here1 = await hereA.next(() => true, 'here() for the first user');
    checkEqual(here1, [USERS[1]], 'here() of the first user');
    b.echo
      .join(room)
      .here((users) => hereB.push(users))
      .joining((u) => joiningB.push(u));
    const here2 = await hereB.next(() => true, 'here() for the second user');
    const sorted = [...here2].sort((x, y) => x.id - y.id);
    checkEqual(sorted, [USERS[1], USERS[2]], 'here() of the second user');
    checkEqual(await joiningA.next(() => true, 'joining()'), USERS[2], 'joining() payload');
    await joiningB.none(() => true, 'its own joining()');
    b.echo.leave(room);
    checkEqual(await leavingA.next(() => true, 'leaving()'), USERS[2], 'leaving() payload');
    return { broadcaster: BROADCASTER, here_first: here1, here_second: sorted };
  },

  async encrypted() {
    const auth = await startAuthServer(APP, USERS);
    const client = echoFor(auth, 1);
    await connected(client);
    const base = `secrets.${rnd()}`;
    const events = inboxOf('encrypted');
    const channel = client.echo.encryptedPrivate(base).listen('.launch', (e) => events.push(e));
    await subscribedEcho(channel, `private-encrypted-${base}`);
    await okJson(auth.sdk.trigger(`private-encrypted-${base}`, 'launch', { code: 1234 }), 'trigger');
    checkEqual(await events.next(() => true, 'decrypted .launch'), { code: 1234 }, 'decrypted payload');
    return { broadcaster: BROADCASTER };
  },

  // .error(): the backend refuses (403, raised by pusher-js itself) and the backend answers with a
  // bad signature (refused by Ressonance with pusher:subscription_error, docs/protocol.md "Subscription errors").
  async error() {
    const auth = await startAuthServer(APP, USERS);
    const client = echoFor(auth, 1);
    await connected(client);
    const out = {};
    for (const [label, base] of [
      ['forbidden', `forbidden.${rnd()}`],
      ['tampered', `tampered.${rnd()}`],
    ]) {
      const errors = inboxOf(`${label} error()`);
      const subscribed = inboxOf(`${label} subscribed()`);
      client.echo
        .private(base)
        .error((e) => errors.push(e))
        .subscribed(() => subscribed.push(true));
      const err = await errors.next(() => true, `.error() for ${label}`);
      checkEqual(err.type, 'AuthError', `${label}: error type`);
      out[label] = { type: err.type, status: err.status, error: err.error };
      check(!subscribed.all().length, `${label}: subscribed() must not fire`);
    }
    checkEqual(out.forbidden.status, 403, 'status from the backend that refused');
    checkEqual(out.tampered.status, 401, 'status from Ressonance for a bad signature');
    checkEqual(client.echo.connectionStatus(), 'connected', 'connection after refused subscriptions');
    return { broadcaster: BROADCASTER, ...out };
  },
};

main(scenarios);
