// The browser client end to end: real Chromium (fake camera and microphone) against a
// real server. One browser for the file; each person is a browser context of their own.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, signIn, startServer, screenshot, toast, expectVideoDecoding } from './harness.mjs';

let server;
let browser;
const people = [];

async function person(name, opts) {
  const p = await signIn(browser, server.url, name, opts);
  people.push(p);
  return p;
}

async function leave(...ps) {
  for (const p of ps) {
    await p.context.close();
    people.splice(people.indexOf(p), 1);
  }
}

function assertNoConsoleErrors(...ps) {
  for (const p of ps) assert.deepEqual(p.errors, [], `${p.name}'s console had errors`);
}

before(async () => {
  // A short ring so the unanswered call times out within the test.
  server = await startServer({ SWITCHBOARD_TIMERS__RING_TIMEOUT_SECS: '3' });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

describe('web client', () => {
  test('alice and bob see each other online and chat with typing and unread badges', async () => {
    const alice = await person('Alice');
    const bob = await person('Bob');

    // Presence: each sees the other online, and a status change shows up.
    await alice.page.getByTestId('tab-people').click();
    await alice.page.getByTestId('status-bob').filter({ hasText: 'Online' }).waitFor();
    await bob.page.getByTestId('tab-people').click();
    await bob.page.getByTestId('status-alice').filter({ hasText: 'Online' }).waitFor();
    await bob.page.getByTestId('my-status').selectOption('away');
    await alice.page.getByTestId('status-bob').filter({ hasText: 'Away' }).waitFor();
    await screenshot(alice, 'people.png');

    // Alice writes to Bob: Bob gets an unread badge on the conversation.
    await alice.page.getByRole('button', { name: 'Message Bob' }).click();
    await alice.page.getByTestId('thread-title').filter({ hasText: 'Bob' }).waitFor();
    await alice.page.getByTestId('composer').fill('Hi Bob, got a minute?');
    await alice.page.getByTestId('send').click();
    await bob.page.getByTestId('tab-chats').click();
    const bobsConversation = bob.page.getByTestId('conversation-Alice');
    await bobsConversation.getByTestId('unread-badge').filter({ hasText: '1' }).waitFor();

    // Opening it reads it: the badge goes away.
    await bobsConversation.click();
    await bob.page.getByTestId('message-content').filter({ hasText: 'Hi Bob, got a minute?' }).waitFor();
    await bobsConversation.getByTestId('unread-badge').waitFor({ state: 'detached' });

    // Typing shows on the other side, and stops when the message is sent.
    await alice.page.getByTestId('composer').pressSequentially('Great, call', { delay: 20 });
    await bob.page.getByTestId('typing-indicator').filter({ hasText: 'Alice is typing' }).waitFor();
    await alice.page.getByTestId('composer').press('Enter');
    await bob.page.getByTestId('message-content').filter({ hasText: 'Great, call' }).waitFor();
    await bob.page.getByTestId('typing-indicator').filter({ hasText: 'typing' }).waitFor({ state: 'detached' }).catch(() => undefined);
    assert.equal(await bob.page.getByTestId('typing-indicator').innerText(), '');

    // Bob answers; Alice, still in the thread, reads it without a badge.
    await bob.page.getByTestId('composer').fill('Sure, ring me');
    await bob.page.getByTestId('composer').press('Enter');
    await alice.page.getByTestId('message-content').filter({ hasText: 'Sure, ring me' }).waitFor();
    assert.equal(await alice.page.getByTestId('conversation-Bob').getByTestId('unread-badge').count(), 0);
    await screenshot(alice, 'chat.png');

    // The same screen at a phone's width.
    await bob.page.setViewportSize({ width: 390, height: 780 });
    await screenshot(bob, 'chat-phone.png');
    await bob.page.setViewportSize({ width: 1280, height: 800 });

    assertNoConsoleErrors(alice, bob);
    await leave(alice, bob);
  });

  test('a declined call and an unanswered call show the right toasts', async () => {
    const alice = await person('Alice');
    const bob = await person('Bob');
    await alice.page.getByTestId('tab-people').click();

    // Declined.
    await alice.page.getByTestId('call-bob').click();
    await alice.page.getByTestId('outgoing-call').waitFor();
    await bob.page.getByTestId('incoming-call').filter({ hasText: 'Alice' }).waitFor();
    await screenshot(bob, 'incoming-call.png');
    await bob.page.getByTestId('decline-call').click();
    await toast(alice.page, 'Bob declined the call.').waitFor();
    await alice.page.getByTestId('outgoing-call').waitFor({ state: 'detached' });

    // Unanswered: the server's ring timeout (3 s here) ends it on both sides.
    await alice.page.getByTestId('call-bob').click();
    await bob.page.getByTestId('incoming-call').waitFor();
    await toast(alice.page, 'No answer from Bob.').waitFor({ timeout: 10_000 });
    await toast(bob.page, 'Missed call from Alice.').waitFor();
    await bob.page.getByTestId('incoming-call').waitFor({ state: 'detached' });

    // Both calls are in the history.
    await alice.page.getByTestId('tab-history').click();
    const history = alice.page.getByTestId('call-history');
    await history.getByText('Missed').first().waitFor();
    await history.getByText('Declined').first().waitFor();
    await screenshot(alice, 'call-history.png');

    assertNoConsoleErrors(alice, bob);
    await leave(alice, bob);
  });
});
