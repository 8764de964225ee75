"""Acknowledgements over python-socketio: users:get shape and INVALID_PAYLOAD."""

import time

import pytest

from conftest import Recorder, random_id


@pytest.fixture(scope="module")
def users(dev_server):
    """Two users that connected once (users are upserted on connect)."""
    ids = {"alice": random_id("pyalice"), "bob": random_id("pybob")}
    for name, uid in ids.items():
        rec = Recorder(["websocket"]).connect(dev_server.url, {"userId": uid, "name": name.title(), "deviceId": "d"})
        rec.wait_for("session")
        rec.close()
    # Wait until both are readable (the upsert may complete after the session event).
    viewer = Recorder(["websocket"]).connect(dev_server.url, {"userId": random_id("pywait")})
    try:
        deadline = time.monotonic() + 3
        while True:
            ack = viewer.call("users:get", {"userIds": list(ids.values())})
            if len((ack or {}).get("users") or []) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        viewer.close()
    return ids


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_users_get_ack_shape(dev_server, client, users, transport):
    rec = client([transport]).connect(dev_server.url, {"userId": random_id("pyviewer"), "name": "Viewer"})
    ack = rec.call("users:get", {"userIds": [users["alice"], users["bob"], random_id("never")]})
    assert isinstance(ack, dict), ack
    assert ack["success"] is True, ack
    by_id = {u["userId"]: u for u in ack["users"]}
    assert set(by_id) == {users["alice"], users["bob"]}
    assert by_id[users["alice"]]["name"] == "Alice"
    assert by_id[users["bob"]]["name"] == "Bob"


MALFORMED = [
    ("missing", None),
    ("string", "alice"),
    ("empty-object", {}),
    ("userIds-number", {"userIds": 5}),
    ("userIds-with-number", {"userIds": ["a", 1]}),
    ("501-ids", {"userIds": [f"id-{i}" for i in range(501)]}),
    ("id-129-chars", {"userIds": ["x" * 129]}),
]


@pytest.mark.parametrize("label,payload", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_users_get_invalid_payload(dev_server, client, users, label, payload):
    rec = client().connect(dev_server.url, {"userId": random_id("pybad"), "name": "Bad"})
    ack = rec.call("users:get", payload)
    assert isinstance(ack, dict), ack
    assert ack["success"] is False, ack
    assert ack["code"] == "INVALID_PAYLOAD", ack
    assert isinstance(ack["error"], str) and ack["error"], ack
    # The socket and the server keep working.
    assert rec.sio.connected
    ok = rec.call("users:get", {"userIds": [users["alice"]]})
    assert ok == {"success": True, "users": [{"userId": users["alice"], "name": "Alice"}]}


def test_unknown_event_and_no_ack(dev_server, client, users):
    rec = client().connect(dev_server.url, {"userId": random_id("pyunk"), "name": "Unk"})
    rec.sio.emit("no:such:event", {"x": 1})
    rec.sio.emit("users:get", {"userIds": [users["bob"]]})  # no ack callback
    ack = rec.call("users:get", {"userIds": [users["bob"]]})
    assert ack == {"success": True, "users": [{"userId": users["bob"], "name": "Bob"}]}
    assert rec.sio.connected
