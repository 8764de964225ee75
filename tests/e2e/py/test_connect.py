"""Handshake with python-socketio: transports, dev and JWT auth, refusals."""

import time

import pytest
import socketio

from conftest import mint_token, random_id

TRANSPORTS = ["websocket", "polling"]


def check_session(session, rec, user_id, name, device_id):
    assert isinstance(session, dict), session
    assert session["userId"] == user_id
    assert session["name"] == name
    assert session["deviceId"] == device_id
    assert session["socketId"] == rec.sio.get_sid("/")
    assert isinstance(session["serverTime"], (int, float))
    assert abs(session["serverTime"] - time.time() * 1000) < 60_000


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_dev_auth_connects(dev_server, client, transport):
    user_id = random_id("pydev")
    rec = client([transport]).connect(dev_server.url, {"userId": user_id, "name": "Py Dev", "deviceId": "py1"})
    assert rec.sio.connected
    assert rec.sio.transport() == transport
    check_session(rec.wait_for("session"), rec, user_id, "Py Dev", "py1")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_jwt_auth_connects_in_dev_mode(dev_server, client, transport):
    user_id = random_id("pyjwtdev")
    token = mint_token({"sub": user_id, "name": "Py Jwt", "device": "py2"})
    rec = client([transport]).connect(dev_server.url, {"token": token})
    check_session(rec.wait_for("session"), rec, user_id, "Py Jwt", "py2")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_jwt_auth_connects_in_production_mode(prod_server, client, transport):
    user_id = random_id("pyprod")
    token = mint_token({"sub": user_id, "name": "Py Prod", "device": "py3"})
    rec = client([transport]).connect(prod_server.url, {"token": token})
    assert rec.sio.transport() == transport
    check_session(rec.wait_for("session"), rec, user_id, "Py Prod", "py3")


REFUSALS = [
    ("no auth", None, "unauthorized"),
    ("wrong signature", {"token": mint_token({"sub": "x"}, secret="not-the-secret-but-long-enough-0123456789")}, "unauthorized"),
    ("garbage token", {"token": "garbage"}, "unauthorized"),
    ("expired token", {"token": mint_token({"sub": "x", "exp": int(time.time()) - 30})}, "unauthorized"),
    ("dev auth outside dev mode", {"userId": "someone", "name": "S"}, "unauthorized"),
    ("token is a number", {"token": 5}, "invalid_auth"),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("label,auth,message", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_production_refusals(prod_server, client, transport, label, auth, message):
    rec = client([transport])
    with pytest.raises(socketio.exceptions.ConnectionError):
        rec.connect(prod_server.url, auth)
    assert rec.connect_errors == [{"message": message}], label
    assert not rec.sio.connected


@pytest.mark.parametrize(
    "auth,message",
    [
        (None, "unauthorized"),
        ({"userId": 42, "name": "Num"}, "invalid_auth"),
        ({"userId": "ok", "name": 7}, "invalid_auth"),
        ({"userId": "u" * 129}, "invalid_auth"),
    ],
    ids=["no-auth", "userId-number", "name-number", "userId-too-long"],
)
def test_dev_refusals(dev_server, client, auth, message):
    rec = client()
    with pytest.raises(socketio.exceptions.ConnectionError):
        rec.connect(dev_server.url, auth)
    assert rec.connect_errors == [{"message": message}]


def test_server_still_accepts_after_refusals(prod_server, client):
    user_id = random_id("pyafter")
    rec = client().connect(prod_server.url, {"token": mint_token({"sub": user_id})})
    session = rec.wait_for("session")
    assert session["userId"] == user_id
    assert session["name"] == user_id, "the name defaults to the user id"

