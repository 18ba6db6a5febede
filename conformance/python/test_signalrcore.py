"""Conformance: the unmodified Python SignalR client `signalrcore` against the gateway binary.

Run (from the repository root, in a venv with requirements.txt installed):

    HUBGATE_BIN=target/debug/gateway python -m unittest discover -s conformance/python -v

The gateway serves its built-in relay hub at /hubs/{name}. signalrcore negotiates without a
negotiateVersion (version 0: the connectionId doubles as the `id` of the transport request),
then talks JSON over WebSockets. Every wait below is bounded by a deadline on an Event or a
Condition; nothing sleeps to synchronise.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid

from signalrcore.hub_connection_builder import HubConnectionBuilder
from signalrcore.protocol.json_hub_protocol import JsonHubProtocol
from signalrcore.transport.websockets.websocket_transport import WebsocketTransport

DEADLINE = 10.0  # seconds for any single expectation
STARTUP_DEADLINE = 30.0  # seconds for the gateway to answer /healthz
# signalrcore's stop() closes the socket without shutdown() and then joins its receive thread,
# which stays blocked in recv() until the server sends the next frame: stop() returns (and
# on_close fires) only after the gateway's next keep-alive Ping. The default interval (15 s,
# as in ASP.NET Core) would make every stop take up to 15 s, so the gateway pings every second.
KEEP_ALIVE = "1s"
HUB_PATH = "/hubs/py"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    """The gateway binary on a free loopback port; its output goes to a temp file."""

    def __init__(self, binary):
        self.binary = binary
        self.proc = None
        self.port = None
        self.log = tempfile.TemporaryFile(mode="w+b")

    def start(self):
        last_error = None
        for _ in range(3):  # a freshly picked port may be taken in between: try another
            self.port = free_port()
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--keep-alive-interval",
                    KEEP_ALIVE,
                    "--log",
                    "warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
            try:
                self._wait_healthy()
                return
            except RuntimeError as error:
                last_error = error
                self.stop()
        raise RuntimeError(f"gateway did not start: {last_error}\n{self.output()}")

    def _wait_healthy(self):
        deadline = time.monotonic() + STARTUP_DEADLINE
        url = f"http://127.0.0.1:{self.port}/healthz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                pass
            # Poll the port again shortly; this is a bounded retry, not synchronisation.
            time.sleep(0.05)
        raise RuntimeError("gateway did not answer /healthz in time")

    def url(self, path=HUB_PATH):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=DEADLINE)

    def output(self):
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def close(self):
        self.stop()
        self.log.close()


class Client:
    """One signalrcore HubConnection with Events for its life cycle and a blocking invoke."""

    def __init__(self, url, name):
        self.name = name
        self.connection = HubConnectionBuilder().with_url(url).build()
        self.opened = threading.Event()
        self.closed = threading.Event()
        self.errors = []
        self.negotiate_responses = []
        self._cond = threading.Condition()
        self._received = {}  # target -> list of argument lists
        self._pending = {}  # invocation id -> [Event, result, error]

        self.connection.on_open(self.opened.set)
        self.connection.on_close(self.closed.set)
        self.connection.on_error(self._on_error)

        # Record what negotiate answered (the builder's connection calls self._negotiate()).
        original_negotiate = self.connection._negotiate

        def recording_negotiate():
            response = original_negotiate()
            self.negotiate_responses.append(response)
            return response

        self.connection._negotiate = recording_negotiate

    # -- life cycle -------------------------------------------------------------------------
    def start(self, test):
        test.assertTrue(self.connection.start(), f"{self.name}: start() returned False")
        test.assertTrue(
            self.opened.wait(DEADLINE),
            f"{self.name}: on_open (handshake completed) did not fire within {DEADLINE}s; "
            f"errors: {self.errors}",
        )

    def stop_in_background(self):
        """Calls stop() on a daemon thread so a stuck client cannot hang the test run."""
        thread = threading.Thread(target=self._stop_quietly, name=f"stop-{self.name}", daemon=True)
        thread.start()
        return thread

    def _stop_quietly(self):
        try:
            self.connection.stop()
        except Exception as error:  # noqa: BLE001 - only used for cleanup
            self.errors.append(error)

    # -- receiving --------------------------------------------------------------------------
    def listen(self, target):
        with self._cond:
            self._received.setdefault(target, [])

        def handler(arguments):
            with self._cond:
                self._received[target].append(list(arguments))
                self._cond.notify_all()

        self.connection.on(target, handler)

    def received(self, target):
        with self._cond:
            return list(self._received.get(target, []))

    def wait_for(self, target, count=1, timeout=DEADLINE):
        """Waits until `count` invocations of `target` arrived; returns them all."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self._received.get(target, [])) >= count, timeout)
            got = list(self._received.get(target, []))
        if not ok:
            raise AssertionError(
                f"{self.name}: expected {count} '{target}' message(s) within {timeout}s, got {got}; "
                f"errors: {self.errors}"
            )
        return got

    # -- invoking ---------------------------------------------------------------------------
    def _on_error(self, message):
        invocation_id = getattr(message, "invocation_id", None)
        with self._cond:
            pending = self._pending.get(invocation_id)
        if pending is not None:
            pending[2] = getattr(message, "error", message)
            pending[0].set()
        else:
            self.errors.append(message)

    def invoke(self, method, arguments, timeout=DEADLINE):
        """Invokes a hub method and returns its result (a failed invocation raises)."""
        invocation_id = str(uuid.uuid4())
        pending = [threading.Event(), None, None]
        with self._cond:
            self._pending[invocation_id] = pending

        def on_invocation(completion):
            pending[1] = completion
            pending[0].set()

        try:
            self.connection.send(method, arguments, on_invocation=on_invocation, invocation_id=invocation_id)
            if not pending[0].wait(timeout):
                raise AssertionError(f"{self.name}: no completion for {method}{arguments} within {timeout}s")
        finally:
            with self._cond:
                self._pending.pop(invocation_id, None)
        if pending[2] is not None:
            raise AssertionError(f"{self.name}: {method}{arguments} failed: {pending[2]}")
        completion = pending[1]
        if completion.invocation_id != invocation_id:
            raise AssertionError(f"completion for {completion.invocation_id}, expected {invocation_id}")
        return completion.result


class SignalrcoreConformance(unittest.TestCase):
    def setUp(self):
        binary = os.environ.get("HUBGATE_BIN")
        if not binary:
            self.fail("set HUBGATE_BIN to the gateway binary")
        if not os.access(binary, os.X_OK):
            self.fail(f"HUBGATE_BIN={binary} is not an executable file")
        self.gateway = Gateway(binary)
        self.addCleanup(self.gateway.close)
        self.gateway.start()
        self.clients = []

    def tearDown(self):
        threads = [c.stop_in_background() for c in self.clients if not c.closed.is_set()]
        for thread in threads:
            thread.join(DEADLINE)
        # Killing the gateway also ends any client socket a stuck stop() left open.
        self.gateway.stop()
        if self._outcome_failed():
            sys.stderr.write(f"\n--- gateway output ---\n{self.gateway.output()}\n")

    def _outcome_failed(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        if result is None:
            return False
        return any(test is self for test, _ in result.failures + result.errors)

    def connect(self, name):
        client = Client(self.gateway.url(), name)
        self.clients.append(client)
        client.start(self)
        return client

    # -- tests ------------------------------------------------------------------------------
    def test_connection_opens_with_json_over_websockets(self):
        client = self.connect("a")
        self.assertIsInstance(client.connection.transport, WebsocketTransport)
        self.assertIsInstance(client.connection.protocol, JsonHubProtocol)
        self.assertTrue(client.connection.transport.is_connected())

    def test_negotiate_v0_uses_connection_id_as_id(self):
        client = self.connect("a")
        self.assertEqual(len(client.negotiate_responses), 1)
        response = client.negotiate_responses[0]
        self.assertEqual(response.negotiate_version, 0, "signalrcore sends no negotiateVersion: expect v0")
        self.assertTrue(response.connection_id)
        # signalrcore puts the connectionId itself into `id=` of the WebSocket request ...
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(client.connection.transport.url).query)
        self.assertEqual(query.get("id"), [response.connection_id])
        # ... and the gateway accepted it as that connection: the hub sees the same id.
        connection_id = client.invoke("GetConnectionId", [])
        self.assertIsInstance(connection_id, str)
        self.assertTrue(connection_id)
        self.assertEqual(connection_id, response.connection_id)

        # The same negotiate request signalrcore makes, checked on the wire: no
        # negotiateVersion in, version 0 and no connectionToken out.
        request = urllib.request.Request(
            self.gateway.url(HUB_PATH + "/negotiate"),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=DEADLINE) as raw:
            self.assertEqual(raw.status, 200)
            body = json.loads(raw.read().decode("utf-8"))
        self.assertEqual(body.get("negotiateVersion"), 0)
        self.assertNotIn("connectionToken", body)
        self.assertTrue(body.get("connectionId"))
        self.assertIn("WebSockets", [t["transport"] for t in body["availableTransports"]])

    def test_echo_unicode(self):
        client = self.connect("a")
        value = "héllo wörld ✓ 日本語 \U0001F680 \"quoted\" \\ back\nslash"
        self.assertEqual(client.invoke("Echo", [value]), value)
        structured = {"text": "ünïcødé", "n": 42, "list": [1, 2.5, None, True]}
        self.assertEqual(client.invoke("Echo", [structured]), structured)

    def test_send_to_all_reaches_every_client(self):
        a = self.connect("a")
        b = self.connect("b")
        a.listen("message")
        b.listen("message")
        self.assertIsNone(a.invoke("SendToAll", ["message", "from-python"]))
        self.assertEqual(a.wait_for("message"), [["from-python"]])
        self.assertEqual(b.wait_for("message"), [["from-python"]])

    def test_group_messages_reach_members_only(self):
        group = "py-group"
        member1 = self.connect("member1")
        member2 = self.connect("member2")
        outsider = self.connect("outsider")
        for client in (member1, member2, outsider):
            client.listen("groupMessage")
            client.listen("marker")
        member1.invoke("JoinGroup", [group])
        member2.invoke("JoinGroup", [group])

        outsider.invoke("SendToGroup", [group, "groupMessage", "to-group", 7])
        self.assertEqual(member1.wait_for("groupMessage"), [["to-group", 7]])
        self.assertEqual(member2.wait_for("groupMessage"), [["to-group", 7]])

        # A later broadcast reaches the outsider over the same ordered connection: once it is
        # there, a group message would have arrived before it.
        outsider.invoke("SendToAll", ["marker", "after-group"])
        outsider.wait_for("marker")
        self.assertEqual(outsider.received("groupMessage"), [])

        # After LeaveGroup the former member gets nothing either.
        member2.invoke("LeaveGroup", [group])
        outsider.invoke("SendToGroup", [group, "groupMessage", "second"])
        self.assertEqual(member1.wait_for("groupMessage", count=2), [["to-group", 7], ["second"]])
        outsider.invoke("SendToAll", ["marker", "after-leave"])
        member2.wait_for("marker", count=2)
        self.assertEqual(member2.received("groupMessage"), [["to-group", 7]])
        self.assertEqual(outsider.received("groupMessage"), [])

    def test_hub_error_reaches_client(self):
        client = self.connect("a")
        with self.assertRaisesRegex(AssertionError, "failed"):
            client.invoke("NoSuchMethod", [])
        # The connection survives an unknown method.
        self.assertEqual(client.invoke("Echo", ["still-there"]), "still-there")

    def test_stop_closes_cleanly(self):
        client = self.connect("a")
        self.assertEqual(client.invoke("Echo", ["before-stop"]), "before-stop")
        stopper = client.stop_in_background()
        self.assertTrue(client.closed.wait(DEADLINE), f"on_close did not fire within {DEADLINE}s after stop()")
        stopper.join(DEADLINE)
        self.assertFalse(stopper.is_alive(), "stop() did not return")
        self.assertFalse(client.connection.transport.is_running())
        self.assertEqual(client.errors, [])
        # The gateway is still serving others.
        other = self.connect("b")
        self.assertEqual(other.invoke("Echo", ["after-stop"]), "after-stop")


if __name__ == "__main__":
    unittest.main()
