// SIGTERM: graceful exit with code 0; connected clients see a disconnect.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { closeAllSockets, connect, mintToken, startServer, waitForDisconnect, waitForEvent, withStderr, withTimeout } from './helpers.mjs';

after(() => closeAllSockets());

for (const dev of [true, false]) {
  test(`SIGTERM exits 0 and disconnects clients (${dev ? 'dev' : 'production'} mode)`, async () => {
    const secret = 'e2e-secret-shutdown-0123456789';
    const server = await startServer({ dev, env: { SWITCHBOARD_AUTH__JWT_SECRET: secret } });
    try {
      await withStderr(
        () => server,
        async () => {
          const ws = await connect(server.url, dev ? { userId: 'term-ws' } : { token: mintToken(secret, { sub: 'term-ws' }) });
          const poll = await connect(server.url, dev ? { userId: 'term-poll' } : { token: mintToken(secret, { sub: 'term-poll' }) }, {
            transports: ['polling'],
          });
          await waitForEvent(ws, 'session');
          await waitForEvent(poll, 'session');

          server.proc.kill('SIGTERM');
          const { code, signal } = await withTimeout(server.exited, 15000, 'the server did not exit after SIGTERM');
          assert.equal(signal, null, `exited by signal ${signal}, not by itself`);
          assert.equal(code, 0, 'exit code after SIGTERM');
          await waitForDisconnect(ws, 5000);
          await waitForDisconnect(poll, 8000);
          assert.equal(ws.connected, false);
          assert.equal(poll.connected, false);
        },
      )();
    } finally {
      await server.stop({ signal: 'SIGKILL' });
    }
  });
}
