"""Conformance: the unmodified Python SignalR client `signalrcore` against the gateway binary.

Run (from the repository root, in a venv with requirements.txt installed):

    HUBGATE_BIN=target/debug/gateway python -m unittest discover -s conformance/python -v

The gateway serves its built-in relay hub at /hubs/{name}. signalrcore negotiates without a
negotiateVersion (version 0: the connectionId doubles as the `id` of the transport request)
and then speaks JSON or MessagePack over WebSockets, or JSON over Server-Sent Events or long
polling; each of those four is one TestCase class below running the same cases (connect, Echo,
an unknown method, SendToAll / SendToGroup / SendToConnection, stop). Every wait is bounded by a deadline on an
Event or a Condition; nothing sleeps to synchronise.

Client behaviour the cases account for (signalrcore 1.0.2):
- Its handshake carries the negotiate version as the protocol version: `{"protocol":"json",
  "version":0}` (and `"messagepack"`, version 0), which the official server accepts.
- Over WebSockets, stop() closes the socket without a WebSocket Close frame and then joins its
  receive thread, which returns only once the next frame (the gateway's keep-alive Ping)
  arrives; the gateway runs with a 1 s keep-alive for that reason.
- Over long polling it POSTs its handshake before its first poll (the official server buffers
  such a POST), and it hands over only the first record of each poll response: the others wait
  in its buffer for later polls, so a reply can be a keep-alive or more late.
- Long polling with MessagePack cannot start: LongPollingBinaryClient.__init__ calls
  super(LongPollingTextClient, self) and raises TypeError (and the transport never selects it).
"""

import json
import logging
import threading
import time
import unittest
import urllib.parse
import urllib.request
import uuid

from signalrcore.hub_connection_builder import HubConnectionBuilder
from signalrcore.protocol.json_hub_protocol import JsonHubProtocol
from signalrcore.protocol.messagepack_protocol import MessagePackHubProtocol
from signalrcore.transport.long_polling.long_polling_transport import LongPollingTransport
from signalrcore.transport.sse.sse_transport import SSETransport
from signalrcore.transport.websockets.websocket_transport import WebsocketTransport
from signalrcore.types import HttpTransportType, HubProtocolEncoding

from gateway_harness import DEADLINE, NESTED_VALUE, UNICODE_TEXT, start_gateway

HUB_PATH = "/hubs/py"

_LOGGER = logging.getLogger("SignalRCoreClient")


class _Collect(logging.Handler):
    """Keeps signalrcore's warnings and errors for failure messages instead of printing them."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(f"{record.levelname}: {record.getMessage()}")


class Client:
    """One signalrcore HubConnection with Events for its life cycle and a blocking invoke."""

    def __init__(self, url, name, transport, encoding, log):
        self.name = name
        self.log = log
        self.connection = (
            HubConnectionBuilder()
            .with_url(url, options={"transport": transport})
            .with_hub_protocol(encoding)
            .build()
        )
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

    def diagnostics(self):
        return f"errors: {self.errors}; client log: {self.log.records}"

    # -- life cycle -------------------------------------------------------------------------
    def start(self, test):
        test.assertTrue(self.connection.start(), f"{self.name}: start() returned False")
        # start() only launches the transport's thread; the handshake completes (on_open) or
        # fails (the transport falls back to disconnected, without a callback) on that thread.
        deadline = time.monotonic() + DEADLINE
        transport = self.connection.transport
        while not self.opened.wait(0.05):
            if transport.is_disconnected() or time.monotonic() >= deadline:
                test.fail(
                    f"{self.name}: on_open (handshake completed) did not fire; transport state "
                    f"{transport.state.name} after {DEADLINE - (deadline - time.monotonic()):.1f}s; "
                    f"{self.diagnostics()}"
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
                f"{self.diagnostics()}"
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

    def call(self, method, arguments, timeout=DEADLINE):
        """Invokes a hub method; returns (result, error text or None)."""
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
                raise AssertionError(
                    f"{self.name}: no completion for {method}{arguments} within {timeout}s; {self.diagnostics()}"
                )
        finally:
            with self._cond:
                self._pending.pop(invocation_id, None)
        if pending[2] is not None:
            return None, pending[2]
        completion = pending[1]
        if completion.invocation_id != invocation_id:
            raise AssertionError(f"completion for {completion.invocation_id}, expected {invocation_id}")
        return completion.result, None

    def invoke(self, method, arguments, timeout=DEADLINE):
        """Invokes a hub method and returns its result (a failed invocation raises)."""
        result, error = self.call(method, arguments, timeout)
        if error is not None:
            raise AssertionError(f"{self.name}: {method}{arguments} failed: {error}")
        return result


class SignalrcoreCases:
    """The cases every transport and protocol runs; subclasses set the four attributes."""

    TRANSPORT = None  # HttpTransportType
    ENCODING = None  # HubProtocolEncoding
    TRANSPORT_CLASS = None
    PROTOCOL_CLASS = None
    METRIC_TRANSPORT = None  # transport label of hubgate_connections
    METRIC_PROTOCOL = None  # protocol label of hubgate_connections
    GATEWAY_ARGS = ()

    def setUp(self):
        self.log = _Collect()
        _LOGGER.addHandler(self.log)
        _LOGGER.propagate = False
        self.addCleanup(_LOGGER.removeHandler, self.log)
        # An exception that ends one of signalrcore's threads goes into the failure message.
        previous_hook = threading.excepthook

        def keep_thread_exception(args):
            self.log.records.append(
                f"thread {args.thread.name!r} died: {args.exc_type.__name__}: {args.exc_value}"
            )

        threading.excepthook = keep_thread_exception
        self.addCleanup(setattr, threading, "excepthook", previous_hook)
        self.gateway = start_gateway(self, self.GATEWAY_ARGS)
        self.clients = []
        self.addCleanup(self._stop_clients)

    def _stop_clients(self):
        threads = [c.stop_in_background() for c in self.clients if not c.closed.is_set()]
        for thread in threads:
            thread.join(DEADLINE)
        # Killing the gateway (the next cleanup) also ends any socket a stuck stop() left open.

    def connect(self, name):
        client = Client(self.gateway.url(HUB_PATH), name, self.TRANSPORT, self.ENCODING, self.log)
        self.clients.append(client)
        client.start(self)
        return client

    def connections_now(self):
        return self.gateway.metric(
            "hubgate_connections", transport=self.METRIC_TRANSPORT, protocol=self.METRIC_PROTOCOL
        )

    # -- cases ------------------------------------------------------------------------------
    def test_connects(self):
        client = self.connect("a")
        self.assertIsInstance(client.connection.transport, self.TRANSPORT_CLASS)
        self.assertIsInstance(client.connection.protocol, self.PROTOCOL_CLASS)
        self.assertTrue(client.connection.transport.is_connected())
        # The gateway counts it on the transport and protocol the client chose.
        self.gateway.wait_metric(
            "hubgate_connections", 1, transport=self.METRIC_TRANSPORT, protocol=self.METRIC_PROTOCOL
        )
        self.assertEqual(self.gateway.metric("hubgate_connections"), 1)
        # The hub sees the connection id negotiate handed out (v0: it is also the `id`).
        self.assertEqual(client.invoke("GetConnectionId", []), client.negotiate_responses[0].connection_id)

    def test_echo_unicode_and_nested_values(self):
        client = self.connect("a")
        self.assertEqual(client.invoke("Echo", [UNICODE_TEXT]), UNICODE_TEXT)
        self.assertEqual(client.invoke("Echo", [NESTED_VALUE]), NESTED_VALUE)
        self.assertEqual(client.invoke("Echo", [[1, "two", [3, [4, [5]]]]]), [1, "two", [3, [4, [5]]]])
        self.assertIsNone(client.invoke("Echo", [None]))

    def test_unknown_method_error(self):
        client = self.connect("a")
        result, error = client.call("NoSuchMethod", [1, "x"])
        self.assertIsNone(result)
        self.assertEqual(error, "Unknown hub method 'NoSuchMethod'")
        # The connection survives an unknown method.
        self.assertEqual(client.invoke("Echo", ["still-there"]), "still-there")

    def test_send_to_all_reaches_every_client(self):
        a = self.connect("a")
        b = self.connect("b")
        a.listen("message")
        b.listen("message")
        self.assertIsNone(a.invoke("SendToAll", ["message", UNICODE_TEXT, NESTED_VALUE]))
        self.assertEqual(a.wait_for("message"), [[UNICODE_TEXT, NESTED_VALUE]])
        self.assertEqual(b.wait_for("message"), [[UNICODE_TEXT, NESTED_VALUE]])

    def test_group_messages_reach_members_only(self):
        group = "py-group ✓"
        member1 = self.connect("member1")
        member2 = self.connect("member2")
        outsider = self.connect("outsider")
        for client in (member1, member2, outsider):
            client.listen("groupMessage")
            client.listen("marker")
        self.assertIsNone(member1.invoke("JoinGroup", [group]))
        self.assertIsNone(member2.invoke("JoinGroup", [group]))

        self.assertIsNone(outsider.invoke("SendToGroup", [group, "groupMessage", "to-group", 7, NESTED_VALUE]))
        self.assertEqual(member1.wait_for("groupMessage"), [["to-group", 7, NESTED_VALUE]])
        self.assertEqual(member2.wait_for("groupMessage"), [["to-group", 7, NESTED_VALUE]])

        # A later broadcast reaches the outsider over the same ordered connection: once it is
        # there, a group message would have arrived before it.
        outsider.invoke("SendToAll", ["marker", "after-group"])
        outsider.wait_for("marker")
        self.assertEqual(outsider.received("groupMessage"), [])

        # After LeaveGroup the former member gets nothing either.
        member2.invoke("LeaveGroup", [group])
        outsider.invoke("SendToGroup", [group, "groupMessage", "second"])
        self.assertEqual(member1.wait_for("groupMessage", count=2), [["to-group", 7, NESTED_VALUE], ["second"]])
        outsider.invoke("SendToAll", ["marker", "after-leave"])
        member2.wait_for("marker", count=2)
        self.assertEqual(member2.received("groupMessage"), [["to-group", 7, NESTED_VALUE]])
        self.assertEqual(outsider.received("groupMessage"), [])

    def test_send_to_connection_reaches_that_connection_only(self):
        sender = self.connect("sender")
        target = self.connect("target")
        other = self.connect("other")
        for client in (sender, target, other):
            client.listen("direct")
        target_id = target.invoke("GetConnectionId", [])
        other_id = other.invoke("GetConnectionId", [])
        self.assertNotEqual(target_id, other_id)

        self.assertIsNone(sender.invoke("SendToConnection", [target_id, "direct", "just for you", NESTED_VALUE]))
        self.assertEqual(target.wait_for("direct"), [["just for you", NESTED_VALUE]])
        # A later message to `other` from the same sender: once it is there, a misrouted first
        # message would have arrived before it.
        sender.invoke("SendToConnection", [other_id, "direct", "second"])
        self.assertEqual(other.wait_for("direct"), [["second"]])
        self.assertEqual(sender.received("direct"), [])
        self.assertEqual(target.received("direct"), [["just for you", NESTED_VALUE]])

    def test_stop_closes_cleanly(self):
        client = self.connect("a")
        self.assertEqual(client.invoke("Echo", ["before-stop"]), "before-stop")
        self.gateway.wait_metric(
            "hubgate_connections", 1, transport=self.METRIC_TRANSPORT, protocol=self.METRIC_PROTOCOL
        )
        stopper = client.stop_in_background()
        self.assertTrue(client.closed.wait(DEADLINE), f"on_close did not fire within {DEADLINE}s after stop()")
        stopper.join(DEADLINE)
        self.assertFalse(stopper.is_alive(), "stop() did not return")
        self.assertFalse(client.connection.transport.is_running())
        self.assertEqual(client.errors, [])
        # The gateway ended the connection as one the client closed, not as a protocol error
        # or a timeout.
        self.gateway.wait_metric(
            "hubgate_connections", 0, transport=self.METRIC_TRANSPORT, protocol=self.METRIC_PROTOCOL
        )
        self.gateway.wait_metric("hubgate_disconnects_total", 1)
        for reason in ("protocol_error", "timeout", "server_closed", "slow_consumer"):
            self.assertEqual(self.gateway.metric("hubgate_disconnects_total", reason=reason), 0, reason)
        # The gateway is still serving others.
        other = self.connect("b")
        self.assertEqual(other.invoke("Echo", ["after-stop"]), "after-stop")


class SignalrcoreWebSocketsJson(SignalrcoreCases, unittest.TestCase):
    TRANSPORT = HttpTransportType.web_sockets
    ENCODING = HubProtocolEncoding.text
    TRANSPORT_CLASS = WebsocketTransport
    PROTOCOL_CLASS = JsonHubProtocol
    METRIC_TRANSPORT = "websockets"
    METRIC_PROTOCOL = "json"

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
        self.assertEqual(client.invoke("GetConnectionId", []), response.connection_id)

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
        transports = {t["transport"]: t["transferFormats"] for t in body["availableTransports"]}
        self.assertEqual(sorted(transports.get("WebSockets", [])), ["Binary", "Text"])
        self.assertEqual(sorted(transports.get("LongPolling", [])), ["Binary", "Text"])
        self.assertEqual(transports.get("ServerSentEvents"), ["Text"])


class SignalrcoreWebSocketsMessagePack(SignalrcoreCases, unittest.TestCase):
    TRANSPORT = HttpTransportType.web_sockets
    ENCODING = HubProtocolEncoding.binary
    TRANSPORT_CLASS = WebsocketTransport
    PROTOCOL_CLASS = MessagePackHubProtocol
    METRIC_TRANSPORT = "websockets"
    METRIC_PROTOCOL = "messagepack"

    def test_echo_binary(self):
        client = self.connect("a")
        payload = bytes(range(256))
        self.assertEqual(client.invoke("Echo", [payload]), payload)
        nested = {"blob": b"\x00\xff", "list": [b""]}
        self.assertEqual(client.invoke("Echo", [nested]), nested)


class SignalrcoreLongPollingJson(SignalrcoreCases, unittest.TestCase):
    TRANSPORT = HttpTransportType.long_polling
    ENCODING = HubProtocolEncoding.text
    TRANSPORT_CLASS = LongPollingTransport
    PROTOCOL_CLASS = JsonHubProtocol
    METRIC_TRANSPORT = "long_polling"
    METRIC_PROTOCOL = "json"
    # signalrcore hands over one record per poll response (see the module docstring): a poll
    # that carried two leaves the second in its buffer until a later poll returns, which an
    # idle connection does only at the poll timeout (90 s by default; no keep-alive Pings flow
    # over long polling, as with the official server).
    GATEWAY_ARGS = ("--poll-timeout", "500ms")


class SignalrcoreServerSentEventsJson(SignalrcoreCases, unittest.TestCase):
    TRANSPORT = HttpTransportType.server_sent_events
    ENCODING = HubProtocolEncoding.text
    TRANSPORT_CLASS = SSETransport
    PROTOCOL_CLASS = JsonHubProtocol
    METRIC_TRANSPORT = "server_sent_events"
    METRIC_PROTOCOL = "json"


if __name__ == "__main__":
    unittest.main()
