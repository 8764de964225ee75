// The browser client end to end: real Chromium (fake camera and microphone) against a
// real server. One browser for the file; each person is a browser context of their own.

import { after, afterEach, before, describe, test } from 'node:test';
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

/** The message whose own text (not a quote of it) is `text`. */
function message(page, text) {
  return page.getByTestId('message').filter({ has: page.getByTestId('message-content').getByText(text, { exact: true }) });
}

function assertNoConsoleErrors(...ps) {
  for (const p of ps) assert.deepEqual(p.errors, [], `${p.name}'s console had errors`);
}

before(async () => {
  // A short ring so the unanswered call times out within the test.
  server = await startServer({ SWITCHBOARD_TIMERS__RING_TIMEOUT_SECS: '3' });
  browser = await launchBrowser();
});

// A scenario that failed midway leaves its people signed in (and perhaps in a call, hence
// busy): close them so the next scenario starts clean instead of failing in turn.
afterEach(async () => {
  await leave(...people);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

describe('web client', () => {
  test('alice and bob see each other online, chat with typing and unread badges, and catch up after a reconnect', async () => {
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
    await alice.page.getByTestId('tab-chats').click();
    assert.equal(await alice.page.getByTestId('conversation-Bob').getByTestId('unread-badge').count(), 0);
    await screenshot(alice, 'chat.png');

    // Reply, react, edit and delete reach the other side.
    const bobsReply = message(alice.page, 'Sure, ring me');
    await bobsReply.hover();
    await bobsReply.getByRole('button', { name: 'React' }).click();
    await bobsReply.getByRole('button', { name: '👍' }).click();
    await message(bob.page, 'Sure, ring me').getByTestId('reaction').filter({ hasText: '1' }).waitFor();
    await bobsReply.hover();
    await bobsReply.getByRole('button', { name: 'Reply' }).click();
    await alice.page.getByTestId('composer').fill('Calling now');
    await alice.page.getByTestId('composer').press('Enter');
    await message(bob.page, 'Calling now').locator('.quote').filter({ hasText: 'Sure, ring me' }).waitFor();
    const typo = message(bob.page, 'Sure, ring me');
    await typo.hover();
    await typo.getByRole('button', { name: 'Edit' }).click();
    await bob.page.getByTestId('composer').fill('Sure, ring me now');
    await bob.page.getByTestId('composer').press('Enter');
    await message(alice.page, 'Sure, ring me now').filter({ hasText: 'edited' }).waitFor();
    const mine = message(alice.page, 'Great, call');
    await mine.hover();
    await mine.getByRole('button', { name: 'Delete' }).click();
    await bob.page.getByText('This message was deleted').waitFor();

    // The same screen at a phone's width.
    await bob.page.setViewportSize({ width: 390, height: 780 });
    await screenshot(bob, 'chat-phone.png');
    await bob.page.setViewportSize({ width: 1280, height: 800 });

    // Bob loses his connection (the server drops his socket while his network is down):
    // he sees it, and once back his open thread catches up on what he missed.
    await bob.context.setOffline(true);
    const device = await bob.page.evaluate(() => sessionStorage.getItem('switchboard.deviceId'));
    const revoked = await fetch(`${server.url}/api/users/bob/sessions/${device}`, { method: 'DELETE' });
    assert.equal(revoked.status, 200);
    await bob.page.getByTestId('reconnecting').waitFor();
    await alice.page.getByTestId('composer').fill('Sent while you were away');
    await alice.page.getByTestId('composer').press('Enter');
    await alice.page.getByTestId('message').filter({ hasText: 'Sent while you were away' }).filter({ hasNotText: 'sending' }).waitFor();
    await bob.context.setOffline(false);
    await bob.page.getByTestId('connection-state').filter({ hasText: 'Connected' }).waitFor({ timeout: 15_000 });
    await bob.page.getByTestId('message-content').filter({ hasText: 'Sent while you were away' }).waitFor();
    // Chromium itself logs the reconnection attempts that failed while the network was down.
    bob.errors = bob.errors.filter((e) => !e.includes('net::ERR_INTERNET_DISCONNECTED'));

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
    await history.getByRole('listitem').filter({ hasText: 'Bob' }).filter({ hasText: 'Missed' }).first().waitFor();
    await history.getByRole('listitem').filter({ hasText: 'Bob' }).filter({ hasText: 'Declined' }).first().waitFor();
    await screenshot(alice, 'call-history.png');

    assertNoConsoleErrors(alice, bob);
    await leave(alice, bob);
  });

  test('alice calls bob, who accepts, and both see the other\'s video', async () => {
    const alice = await person('Alice');
    const bob = await person('Bob');
    await alice.page.getByTestId('tab-people').click();
    await alice.page.getByTestId('call-bob').click();
    await bob.page.getByTestId('accept-call').click();

    await alice.page.getByTestId('call-view').waitFor();
    await bob.page.getByTestId('call-view').waitFor();
    await expectVideoDecoding(alice.page, '[data-testid="video-bob"]', "Bob's video at Alice");
    await expectVideoDecoding(bob.page, '[data-testid="video-alice"]', "Alice's video at Bob");

    // Muting shows on the other side.
    await alice.page.getByTestId('toggle-audio').click();
    await bob.page.getByTestId('toggle-chat').click();
    await bob.page.getByRole('button', { name: /People/ }).click();
    await bob.page.getByTestId('participants').getByText('Alice').waitFor();
    await screenshot(alice, 'direct-call.png');

    // Hanging up ends a direct call for both.
    await alice.page.getByTestId('leave-call').click();
    await toast(bob.page, 'The call ended').waitFor();
    await bob.page.getByTestId('call-view').waitFor({ state: 'detached' });

    assertNoConsoleErrors(alice, bob);
    await leave(alice, bob);
  });

  test('three users meet in a group room on the SFU', async () => {
    const alice = await person('Alice');
    const bob = await person('Bob');
    const carol = await person('Carol');

    await alice.page.getByTestId('tab-rooms').click();
    await alice.page.getByTestId('new-room').click();
    await alice.page.getByTestId('room-name').fill('Standup');
    await alice.page.getByTestId('pick-bob').check();
    await alice.page.getByTestId('pick-carol').check();
    await alice.page.getByTestId('create-room').click();
    await alice.page.getByTestId('call-view').waitFor();

    for (const p of [bob, carol]) {
      await p.page.getByTestId('room-invitation').filter({ hasText: 'Alice' }).getByTestId('accept-invitation').click();
      await p.page.getByTestId('call-view').waitFor();
    }
    for (const [p, others] of [
      [alice, [bob, carol]],
      [bob, [alice, carol]],
      [carol, [alice, bob]],
    ]) {
      for (const o of others) {
        await expectVideoDecoding(p.page, `[data-testid="video-${o.userId}"]`, `${o.name}'s video at ${p.name}`);
      }
    }

    // In-call chat reaches everyone.
    await bob.page.getByTestId('toggle-chat').click();
    await bob.page.getByTestId('room-composer').fill('Morning all');
    await bob.page.getByTestId('room-composer').press('Enter');
    await alice.page.getByTestId('toggle-chat').click();
    await alice.page.getByTestId('room-message').filter({ hasText: 'Morning all' }).waitFor();
    await screenshot(alice, 'group-room.png');

    // The host leaves: the others are told the room is hostless, and anyone may end it.
    await alice.page.getByTestId('leave-call').click();
    await bob.page.getByTestId('hostless').waitFor();
    await bob.page.getByTestId('end-call').click();
    await toast(carol.page, 'The call ended').waitFor();

    assertNoConsoleErrors(alice, bob, carol);
    await leave(alice, bob, carol);
  });

  test('a peer-to-peer conversation call connects', async () => {
    const alice = await person('Alice');
    const bob = await person('Bob');
    await alice.page.getByTestId('tab-people').click();
    await alice.page.getByRole('button', { name: 'Message Bob' }).click();
    await alice.page.getByTestId('start-conversation-call').click();
    await alice.page.getByTestId('call-view').getByText('Peer to peer').waitFor();

    await bob.page.getByTestId('conversation-call-invite').filter({ hasText: 'Alice' }).getByTestId('join-call').click();
    await bob.page.getByTestId('call-view').waitFor();
    await expectVideoDecoding(alice.page, '[data-testid="video-bob"]', "Bob's video at Alice");
    await expectVideoDecoding(bob.page, '[data-testid="video-alice"]', "Alice's video at Bob");
    await screenshot(bob, 'conversation-call.png');

    await bob.page.getByTestId('leave-call').click();
    await alice.page.getByTestId('leave-call').click();
    assertNoConsoleErrors(alice, bob);
    await leave(alice, bob);
  });
  test('a conversation call moves to the SFU when a third member joins', async () => {
    const alice = await person('Alice');
    const bob = await person('Bob');
    const carol = await person('Carol');
    await alice.page.getByTestId('tab-chats').click();
    await alice.page.getByTestId('new-group').click();
    await alice.page.getByTestId('group-name').fill('Trio');
    await alice.page.getByTestId('pick-bob').check();
    await alice.page.getByTestId('pick-carol').check();
    await alice.page.getByTestId('create-group').click();
    await alice.page.getByTestId('conversation-Trio').click();
    await alice.page.getByTestId('start-conversation-call').click();
    await alice.page.getByTestId('call-view').getByText('Peer to peer').waitFor();

    // Two in the call: still peer to peer.
    await bob.page.getByTestId('conversation-call-invite').filter({ hasText: 'Alice' }).getByTestId('join-call').click();
    await expectVideoDecoding(alice.page, '[data-testid="video-bob"]', "Bob's peer-to-peer video at Alice");

    // The third join moves everyone, the joiner included, onto the SFU.
    await carol.page.getByTestId('conversation-call-invite').filter({ hasText: 'Alice' }).getByTestId('join-call').click();
    for (const p of [alice, bob, carol]) {
      await p.page.getByTestId('call-view').getByText('Media server (SFU)').waitFor();
    }
    for (const [p, others] of [
      [alice, [bob, carol]],
      [bob, [alice, carol]],
      [carol, [alice, bob]],
    ]) {
      for (const o of others) {
        await expectVideoDecoding(p.page, `[data-testid="video-${o.userId}"]`, `${o.name}'s video at ${p.name} on the SFU`);
      }
    }

    // Hanging up leaves the call as well as its room, so once everyone has, the call is over
    // and a new one starts afresh, peer to peer (it would still be on the SFU otherwise).
    for (const p of [carol, bob, alice]) {
      await p.page.getByTestId('leave-call').click();
      await p.page.getByTestId('call-view').waitFor({ state: 'detached' });
    }
    await alice.page.getByTestId('conversation-Trio').click();
    await alice.page.getByTestId('start-conversation-call').click();
    await alice.page.getByTestId('call-view').getByText('Peer to peer').waitFor();
    await alice.page.getByTestId('leave-call').click();

    assertNoConsoleErrors(alice, bob, carol);
    await leave(alice, bob, carol);
  });
});
