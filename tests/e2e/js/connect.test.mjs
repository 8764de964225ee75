// Handshake: transports, dev and JWT auth, refused handshakes, the `session` event.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  assertRefused,
  cliToken,
  closeAllSockets,
  connect,
  connectError,
  mintToken,
  randomId,
  startServer,
  waitForEvent,
  withStderr,
} from './helpers.mjs';

const SECRET = 'e2e-secret-connect-0123456789abcdef';
const TRANSPORTS = [['websocket'], ['polling']];

function assertSession(session, { userId, name, deviceId, socket }) {
  assert.equal(typeof session, 'object');
  assert.equal(session.userId, userId);
  assert.equal(session.name, name);
  if (deviceId !== undefined) assert.equal(session.deviceId, deviceId);
  else {
    assert.equal(typeof session.deviceId, 'string', 'a generated deviceId is a string');
    assert.ok(session.deviceId.length > 0, 'a generated deviceId is not empty');
  }
  assert.equal(session.socketId, socket.id, 'session.socketId is the Socket.IO socket id');
  assert.equal(typeof session.serverTime, 'number', 'serverTime is a number (ms since epoch)');
  assert.ok(Math.abs(session.serverTime - Date.now()) < 60_000, `serverTime ${session.serverTime} is close to now`);
}

describe('dev-mode server', () => {
  let server;
  before(async () => {
    server = await startServer({ dev: true, env: { SWITCHBOARD_AUTH__JWT_SECRET: SECRET } });
  });
  after(async () => {
    closeAllSockets();
    await server?.stop();
  });
  const srv = () => server;

  for (const transports of TRANSPORTS) {
    test(
      `dev auth connects over ${transports[0]} and gets a session event`,
      withStderr(srv, async () => {
        const userId = randomId('dev');
        const socket = await connect(server.url, { userId, name: 'Dev User', deviceId: 'laptop' }, { transports });
        assert.equal(socket.connected, true);
        assert.equal(socket.io.engine.transport.name, transports[0]);
        const session = await waitForEvent(socket, 'session');
        assertSession(session, { userId, name: 'Dev User', deviceId: 'laptop', socket });
        socket.close();
      }),
    );

    test(
      `JWT auth also works in dev mode over ${transports[0]}`,
      withStderr(srv, async () => {
        const userId = randomId('jwt');
        const token = mintToken(SECRET, { sub: userId, name: 'Jwt In Dev', device: 'tablet' });
        const socket = await connect(server.url, { token }, { transports });
        const session = await waitForEvent(socket, 'session');
        assertSession(session, { userId, name: 'Jwt In Dev', deviceId: 'tablet', socket });
        socket.close();
      }),
    );
  }

  test(
    'a device id is generated when none is given',
    withStderr(srv, async () => {
      const userId = randomId('nodev');
      const a = await connect(server.url, { userId, name: 'No Device' });
      const b = await connect(server.url, { userId, name: 'No Device' });
      const sa = await waitForEvent(a, 'session');
      const sb = await waitForEvent(b, 'session');
      assertSession(sa, { userId, name: 'No Device', socket: a });
      assertSession(sb, { userId, name: 'No Device', socket: b });
      assert.notEqual(sa.deviceId, sb.deviceId, 'two sockets without a deviceId get different ids');
      assert.equal(a.connected && b.connected, true, 'generated devices do not replace each other');
      a.close();
      b.close();
    }),
  );

  test(
    'dev handshake without a name uses the user id as the name',
    withStderr(srv, async () => {
      const userId = randomId('noname');
      const socket = await connect(server.url, { userId });
      const session = await waitForEvent(socket, 'session');
      assert.equal(session.userId, userId);
      assert.equal(session.name, userId);
      socket.close();
    }),
  );

  const malformed = [
    ['userId is a number', { userId: 42, name: 'x' }],
    ['name is a number', { userId: 'ok-user', name: 7 }],
    ['deviceId is an object', { userId: 'ok-user', deviceId: { a: 1 } }],
    ['userId longer than 128 chars', { userId: 'u'.repeat(129) }],
    ['token is not a string', { token: 12345 }],
  ];
  for (const [label, auth] of malformed) {
    test(
      `malformed auth (${label}) is refused with invalid_auth`,
      withStderr(srv, async () => {
        const err = await connectError(server.url, auth);
        assertRefused(err, 'invalid_auth');
      }),
    );
  }

  test(
    'no auth at all is refused with unauthorized, even in dev mode',
    withStderr(srv, async () => {
      const err = await connectError(server.url, undefined);
      assertRefused(err, 'unauthorized');
    }),
  );

  test(
    'the server keeps accepting connections after refused handshakes',
    withStderr(srv, async () => {
      const socket = await connect(server.url, { userId: randomId('after'), name: 'After' });
      assert.equal(socket.connected, true);
      socket.close();
    }),
  );
});

describe('production-mode server (JWT secret, no --dev)', () => {
  let server;
  before(async () => {
    server = await startServer({
      dev: false,
      env: { SWITCHBOARD_AUTH__JWT_SECRET: SECRET, SWITCHBOARD_AUTH__ADMIN_KEY: 'admin-key-connect' },
    });
  });
  after(async () => {
    closeAllSockets();
    await server?.stop();
  });
  const srv = () => server;

  for (const transports of TRANSPORTS) {
    test(
      `JWT auth connects over ${transports[0]} and gets a session event`,
      withStderr(srv, async () => {
        const userId = randomId('prod');
        const token = mintToken(SECRET, { sub: userId, name: 'Prod User', device: 'phone' });
        const socket = await connect(server.url, { token }, { transports });
        assert.equal(socket.io.engine.transport.name, transports[0]);
        const session = await waitForEvent(socket, 'session');
        assertSession(session, { userId, name: 'Prod User', deviceId: 'phone', socket });
        socket.close();
      }),
    );

    test(
      `refusals over ${transports[0]}: no auth, bad token, expired token`,
      withStderr(srv, async () => {
        const opts = { transports };
        const noAuth = await connectError(server.url, undefined, opts);
        assertRefused(noAuth, 'unauthorized');

        const forged = mintToken('not-the-secret', { sub: randomId('forged') });
        assertRefused(await connectError(server.url, { token: forged }, opts), 'unauthorized');

        const garbage = await connectError(server.url, { token: 'not.a.jwt' }, opts);
        assertRefused(garbage, 'unauthorized');

        const expired = mintToken(SECRET, { sub: randomId('expired'), exp: Math.floor(Date.now() / 1000) - 10 });
        assertRefused(await connectError(server.url, { token: expired }, opts), 'unauthorized');
      }),
    );
  }

  test(
    'a token without exp or sub is refused with unauthorized',
    withStderr(srv, async () => {
      const noExp = mintToken(SECRET, { sub: randomId('noexp'), exp: undefined });
      assertRefused(await connectError(server.url, { token: noExp }), 'unauthorized');
      const noSub = mintToken(SECRET, { name: 'nobody' });
      assertRefused(await connectError(server.url, { token: noSub }), 'unauthorized');
    }),
  );

  test(
    'the dev handshake is refused outside dev mode',
    withStderr(srv, async () => {
      const err = await connectError(server.url, { userId: randomId('devinprod'), name: 'Nope' });
      assertRefused(err, 'unauthorized');
    }),
  );

  test(
    'a token minted by `switchboard token` is accepted',
    withStderr(srv, async () => {
      const userId = randomId('cli');
      const token = cliToken({ SWITCHBOARD_AUTH__JWT_SECRET: SECRET }, ['--user', userId, '--name', 'Cli User', '--device', 'cli-dev', '--ttl', '1h']);
      assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'prints a compact JWT');
      const socket = await connect(server.url, { token });
      const session = await waitForEvent(socket, 'session');
      assertSession(session, { userId, name: 'Cli User', deviceId: 'cli-dev', socket });
      socket.close();
    }),
  );
});
