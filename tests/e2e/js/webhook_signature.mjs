// The pusher Node SDK 5's own webhook validator on requests signed by Ressonance.
// Usage: node webhook_signature.mjs < {"key", "secret", "requests": [{"headers", "rawBody"}]}
// (headers with lower-case names, as the SDK expects from Node's http module). Prints one JSON
// line {"ok": true, "valid": [<isValid() of each request>]}; no server and no network.

import PusherServer from 'pusher';

const WATCHDOG_MS = 10000;
setTimeout(() => {
  console.error(`E2E FAIL [webhook_signature]: no result within ${WATCHDOG_MS} ms`);
  process.exit(1);
}, WATCHDOG_MS).unref();

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  input += chunk;
});
process.stdin.on('end', () => {
  const { key, secret, requests } = JSON.parse(input);
  const sdk = new PusherServer({ appId: '1', key, secret });
  const valid = requests.map((request) => sdk.webhook(request).isValid());
  console.log(JSON.stringify({ ok: true, scenario: 'webhook_signature', valid }));
});
