// pusher-js clients for the dashboard's browser tests (tests/dashboard): the same helpers as the
// end-to-end scenarios (../../e2e/js/lib.mjs, which loads pusher-js from tests/e2e/node_modules).
// Usage: node dashboard.mjs <scenario> [args]; E2E_SERVER as for the e2e scripts.

import fs from 'node:fs';

import { app, connected, disconnect, main, pusherClient, sleep, subscribed } from '../../e2e/js/lib.mjs';

const APP = app('1001');
const WAIT_MS = 25000;

const scenarios = {
  // Connect <count> clients, say so, hold them until <release file> exists, then disconnect them.
  async hold() {
    const count = Number(process.argv[3]);
    const release = process.argv[4];
    const clients = Array.from({ length: count }, (_, i) => pusherClient(APP, { name: `held${i}` }));
    const socketIds = await Promise.all(clients.map((c) => connected(c)));
    console.log(JSON.stringify({ connected: count, socket_ids: socketIds }));
    const deadline = Date.now() + WAIT_MS;
    while (!fs.existsSync(release)) {
      if (Date.now() > deadline) throw new Error(`${release} did not appear within ${WAIT_MS} ms`);
      await sleep(50);
    }
    await Promise.all(clients.map((c) => disconnect(c)));
    return { left: count };
  },

  // Subscribe to <channel> (and join <presence channel> as the user <user id>), say so, wait
  // for <event> on <channel> and report its data.
  async receive() {
    const [channel, event, presence, userId] = process.argv.slice(3, 7);
    const client = pusherClient(APP, { presence: { user_id: userId, user_info: { name: userId } } });
    await connected(client);
    const { events } = await subscribed(client, channel);
    await subscribed(client, presence);
    console.log(JSON.stringify({ subscribed: channel }));
    const got = await events.next((e) => e.event === event, `${event} on ${channel}`, WAIT_MS);
    return { event: got.event, data: got.data };
  },
};

main(scenarios);
