// pusher-js 8 against an app made at run time through the management API of another node
// (tests/integration/test_app_store_cluster.py). E2E_SERVER holds the new app (its generated
// key and secret) and the node the test publishes through; the client connects to another node.
//
//   node app_store.mjs new_app <port> <deadline epoch ms>
//     a pusher-js client of the new app on <port>: refused with 4001 while that node does not
//     know the key yet, so a new client is made until one connects (at most until the deadline);
//     it subscribes to a private channel (auth signed by the Node SDK with the new secret), prints
//     {"ready":..., "connected_at": epoch ms, "refusals": [...]} and waits for the event
//     "from-python-sdk" the test publishes with the Python SDK.

import { SERVER, check, errorSummary, main, pusherClient, rnd, sleep, subscribed } from './lib.mjs';

const APP = SERVER.apps[0];

/** Whether a new client connects ({kind: 'connected', at}) or is refused ({kind, code}). */
function outcome(client, ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ kind: 'timeout' }), ms);
    client.pusher.connection.bind('state_change', (s) => {
      if (s.current === 'connected') {
        clearTimeout(timer);
        resolve({ kind: 'connected', at: Date.now() });
      }
    });
    client.pusher.connection.bind('error', (e) => {
      const summary = errorSummary(e);
      if (summary.code !== null) {
        clearTimeout(timer);
        resolve({ kind: 'refused', code: summary.code });
      }
    });
  });
}

const scenarios = {
  async new_app() {
    const port = Number(process.argv[3]);
    const deadline = Number(process.argv[4]);
    check(port > 0 && deadline > 0, 'a port and a deadline (epoch ms) as arguments');
    const refusals = [];
    let client;
    let connectedAt;
    for (let attempt = 0; ; attempt++) {
      client = pusherClient(APP, { name: `try${attempt}`, pusherOptions: { wsPort: port } });
      const got = await outcome(client, Math.max(deadline - Date.now(), 0) + 1000);
      if (got.kind === 'connected') {
        connectedAt = got.at;
        break;
      }
      client.pusher.disconnect();
      refusals.push(got.code ?? got.kind);
      check(got.kind === 'refused' && got.code === 4001, `a refusal other than 4001: ${JSON.stringify(got)}`);
      check(Date.now() < deadline, `not connected before the deadline; refusals: ${refusals}`);
      await sleep(50);
    }
    const name = `private-new-app-${rnd()}`;
    const sub = await subscribed(client, name);
    console.log(JSON.stringify({ ready: true, channel: name, connected_at: connectedAt, refusals }));
    const event = await sub.events.next(
      (e) => e.event === 'from-python-sdk',
      'the event the Python SDK publishes through the other node',
      10000,
    );
    return { connected_at: connectedAt, refusals, data: event.data, socket_id: client.pusher.connection.socket_id };
  },
};

main(scenarios);
