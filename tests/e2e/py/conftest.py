"""Fixtures for the Switchboard end-to-end tests with python-socketio.

A `Server` spawns the real `switchboard serve` binary (SWITCHBOARD_BIN, default
<repo>/target/debug/switchboard) on a free port, waits for its listening line, keeps its
stderr for failure reports and always stops it (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import jwt
import pytest
import socketio

REPO_ROOT = Path(__file__).resolve().parents[3]
BIN = Path(os.environ.get("SWITCHBOARD_BIN") or REPO_ROOT / "target" / "debug" / "switchboard")
READY_LINE = re.compile(r"^switchboard listening on (http://127\.0\.0\.1:(\d+))\s*$")
JWT_SECRET = "e2e-secret-python-0123456789abcdef"

_live_servers: list["Server"] = []


def random_id(prefix: str = "u") -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def mint_token(claims: dict, secret: str = JWT_SECRET) -> str:
    body = {"exp": int(time.time()) + 3600, **claims}
    return jwt.encode(body, secret, algorithm="HS256")


class Server:
    def __init__(self, dev: bool = True, env: dict | None = None, args: list[str] | None = None,
                 timeout: float = 30.0):
        if not BIN.exists():
            raise RuntimeError(
                f"switchboard binary not found at {BIN}: build it with "
                '"cargo build -p switchboard-server" or set SWITCHBOARD_BIN')
        self.data_dir = tempfile.mkdtemp(prefix="switchboard-e2e-py-")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
        full_env.setdefault("RUST_LOG", "info")
        full_env["NO_COLOR"] = "1"
        full_env.update({
            # The server pings right after the handshake; python-engineio's polling client
            # can then miss sending its CLOSE on disconnect and wait for the next ping to
            # end its long-poll. A short interval bounds that wait.
            "SWITCHBOARD_SERVER__PING_INTERVAL_SECS": "2",
            "SWITCHBOARD_DATA_DIR": self.data_dir,
            "SWITCHBOARD_SERVER__DATA_DIR": self.data_dir,
            "SWITCHBOARD_STORE__PREFIX": f"e2e-py-{secrets.token_hex(5)}:",
        })
        full_env.update(env or {})
        self.argv = [str(BIN), "serve", *(["--dev"] if dev else []), "--bind", "127.0.0.1:0",
                     *(args or [])]
        self._stderr: list[str] = []
        self.url = ""
        self.port = 0
        self.proc = subprocess.Popen(self.argv, cwd=self.data_dir, env=full_env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        _live_servers.append(self)
        ready = threading.Event()

        def read_stdout():
            for line in self.proc.stdout:
                m = READY_LINE.match(line.rstrip("\n"))
                if m and not ready.is_set():
                    self.url = m.group(1)
                    self.port = int(m.group(2))
                    ready.set()

        def read_stderr():
            for line in self.proc.stderr:
                self._stderr.append(line)
                if len(self._stderr) > 2000:
                    del self._stderr[:1000]

        threading.Thread(target=read_stdout, daemon=True).start()
        threading.Thread(target=read_stderr, daemon=True).start()

        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                code = self.proc.poll()
                self.stop(sig=signal.SIGKILL)
                why = (f"exited before it was ready (code {code})" if code is not None
                       else f"did not print its listening line within {timeout} s")
                raise RuntimeError(f"switchboard {why}\nargv: {' '.join(self.argv)}\n"
                                   f"--- server stderr (tail) ---\n{self.stderr_tail()}")

    def stderr_tail(self, n: int = 4000) -> str:
        text = "".join(self._stderr)
        return text[-n:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self in _live_servers:
            _live_servers.remove(self)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return self.proc.returncode


class Recorder:
    """A python-socketio client that records every event from before the handshake."""

    def __init__(self, transports: list[str]):
        self.sio = socketio.Client(reconnection=False)
        self.transports = transports
        self.events: list[tuple[str, tuple]] = []
        self.connect_errors: list = []
        self._cond = threading.Condition()

        @self.sio.on("*")
        def _any(event, *args):
            with self._cond:
                self.events.append((event, args))
                self._cond.notify_all()

        @self.sio.event
        def connect_error(*data):
            with self._cond:
                self.connect_errors.append(data[0] if len(data) == 1 else data)
                self._cond.notify_all()

    def connect(self, url: str, auth=None):
        self.sio.connect(url, auth=auth, transports=self.transports, wait_timeout=10)
        return self

    def wait_for(self, event: str, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for name, args in self.events:
                    if name == event:
                        return args[0] if args else None
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = ", ".join(n for n, _ in self.events) or "none"
                    raise AssertionError(f'no "{event}" event within {timeout} s (seen: {seen})')
                self._cond.wait(left)

    def call(self, event: str, data=None, timeout: float = 5.0):
        return self.sio.call(event, data, timeout=timeout)

    def close(self):
        try:
            self.sio.disconnect()
        except Exception:
            pass


@pytest.fixture(scope="module")
def dev_server():
    server = Server(dev=True, env={"SWITCHBOARD_AUTH__JWT_SECRET": JWT_SECRET})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prod_server():
    server = Server(dev=False, env={"SWITCHBOARD_AUTH__JWT_SECRET": JWT_SECRET})
    yield server
    server.stop()


@pytest.fixture
def client():
    """Factory: client(transports=['websocket']) → an unconnected Recorder; all are closed after."""
    made: list[Recorder] = []

    def make(transports=("websocket",)):
        r = Recorder(list(transports))
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for s in list(_live_servers):
            report.sections.append((f"switchboard {s.url or s.argv} stderr (tail)", s.stderr_tail(3000)))


def pytest_sessionfinish(session, exitstatus):
    for s in list(_live_servers):
        s.stop(sig=signal.SIGKILL)
