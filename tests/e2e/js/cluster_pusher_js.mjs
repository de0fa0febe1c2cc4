// pusher-js 8 and the pusher Node SDK against a Ressonance cluster (tests/integration/
// test_cluster_clients.py). E2E_SERVER is the address the SDK publishes to (a third node, or nginx
// in front of the nodes); the scenarios say where the pusher-js clients connect.
//
//   node cluster_pusher_js.mjs two_nodes <port A> <port B>
//     one pusher-js client on each node; an event from the Node SDK (through E2E_SERVER) reaches
//     both; then prints {"ready":...} and waits for an event the Python SDK triggers.
//   node cluster_pusher_js.mjs drain_via_proxy <clients>
//     <clients> pusher-js clients through nginx (E2E_SERVER); events published through nginx reach
//     all of them; prints {"ready":...}; after the test SIGTERMs one node, the clients it held get
//     4200, reconnect through nginx and resubscribe, and every event published afterwards reaches
//     every client exactly once.

import {
  app,
  check,
  checkEqual,
  connected,
  main,
  okJson,
  pusherClient,
  rnd,
  serverSdk,
  sleep,
  subscribed,
} from './lib.mjs';

const APP = app('1001');
const BEFORE = 5;
const AFTER = 10;

/** Wait until every subscription has received `event` with data.i = 0..count-1 (in any order). */
async function allReceived(subs, event, count, ms) {
  await Promise.all(
    subs.flatMap((sub) =>
      Array.from({ length: count }, (_, i) =>
        sub.events.next((e) => e.event === event && e.data.i === i, `${event} #${i}`, ms),
      ),
    ),
  );
  return subs.map((sub) => sub.events.all((e) => e.event === event).length);
}

async function publishNumbered(sdk, channel, event, count) {
  for (let i = 0; i < count; i++) {
    await okJson(sdk.trigger(channel, event, { i }), `${event} #${i}`);
  }
}

const scenarios = {
  async two_nodes() {
    const ports = process.argv.slice(3).map(Number);
    checkEqual(ports.length, 2, 'two node ports as arguments');
    const clients = ports.map((port, i) =>
      pusherClient(APP, { name: `on-node-${i + 1}`, pusherOptions: { wsPort: port } }),
    );
    const socketIds = await Promise.all(clients.map(connected));
    const name = `private-cluster-${rnd()}`;
    const subs = await Promise.all(clients.map((client) => subscribed(client, name)));
    await okJson(serverSdk(APP).trigger(name, 'from-node-sdk', { sdk: 'node' }), 'Node SDK trigger');
    const fromNode = await Promise.all(
      subs.map((sub) => sub.events.next((e) => e.event === 'from-node-sdk', 'the Node SDK event')),
    );
    console.log(JSON.stringify({ ready: true, channel: name }));
    const fromPython = await Promise.all(
      subs.map((sub) =>
        sub.events.next((e) => e.event === 'from-python-sdk', 'the Python SDK event', 15000),
      ),
    );
    return {
      socket_ids: socketIds,
      node_sdk: fromNode.map((e) => e.data),
      python_sdk: fromPython.map((e) => e.data),
    };
  },

  async drain_via_proxy() {
    const count = Number(process.argv[3] || 6);
    const clients = Array.from({ length: count }, (_, i) => pusherClient(APP, { name: `c${i}` }));
    const firstIds = await Promise.all(clients.map(connected));
    const name = `cluster-drain-${rnd()}`;
    const subs = await Promise.all(clients.map((client) => subscribed(client, name)));
    const sdk = serverSdk(APP);
    // nginx spreads these calls over the nodes: each reaches the clients of every node.
    await publishNumbered(sdk, name, 'before', BEFORE);
    const before = await allReceived(subs, 'before', BEFORE, 10000);
    console.log(JSON.stringify({ ready: true, channel: name }));

    // The test SIGTERMs one node now: its clients get 4200 and come back through nginx.
    await Promise.any(
      clients.map((c) => c.errors.next((e) => e.code === 4200, `${c.name}: 4200`, 25000)),
    );
    await sleep(1000); // the other clients of that node get their 4200 within the same drain
    const drained = clients.filter((c) => c.errors.all((e) => e.code === 4200).length > 0);
    for (const client of drained) {
      await client.states.next((s) => s.current === 'connected', `${client.name} to reconnect`, 10000);
      await client.frames.next(
        (f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === name,
        `${client.name} to resubscribe`,
        10000,
      );
    }
    const secondIds = clients.map((c) => c.pusher.connection.socket_id);
    // From the drop of the drained connection to pusher-js being connected again (via nginx).
    const reconnectMs = drained.map((c) => {
      const states = c.states.all();
      const drop = states.findIndex((s) => s.previous === 'connected');
      const back = states.findIndex((s, i) => i > drop && s.current === 'connected');
      return states[back].t - states[drop].t;
    });
    for (const client of drained) {
      const i = clients.indexOf(client);
      check(secondIds[i] !== firstIds[i], `${client.name}: a new socket_id after the reconnect`);
    }
    await publishNumbered(sdk, name, 'after', AFTER);
    const after = await allReceived(subs, 'after', AFTER, 10000);
    await sleep(300); // a duplicate would arrive now
    return {
      clients: count,
      drained: drained.map((c) => c.name),
      reconnect_ms: reconnectMs,
      before,
      after: subs.map((sub) => sub.events.all((e) => e.event === 'after').length),
      after_waited: after,
      states: Object.fromEntries(
        drained.map((c) => [c.name, c.states.all().map((s) => s.current)]),
      ),
    };
  },
};

main(scenarios);
