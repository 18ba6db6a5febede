"""Conformance: the unmodified Python SignalR client `pysignalr` against the gateway binary.

Run (from the repository root, in a venv with requirements.txt installed):

    HUBGATE_BIN=target/debug/gateway python -m unittest discover -s conformance/python -v

pysignalr (asyncio, WebSockets only) negotiates without a negotiateVersion (version 0: the
connectionId is the `id` of the WebSocket request) and speaks JSON or MessagePack; each is one
TestCase class below running the same cases against the relay hub at /hubs/{name}: connect,
Echo, an unknown method, SendToAll / SendToGroup / SendToConnection, stop. Every wait is an
asyncio wait with a deadline; nothing sleeps to synchronise.

Client behaviour the cases account for (pysignalr 1.3.3):
- It has no stop(): a program stops it by cancelling the task that runs `run()` (as its README
  does). The WebSocket is then closed when the connection's async generator is finalised, a
  moment after the task ended, with close code 1011 (the websockets library closes a
  connection left by an exception that way), and on_close is not called.
- A Completion with an error raises RuntimeError inside its receive loop (ending `run()`)
  unless an on_error callback is registered; the callback passed to send() gets the message
  too.
- send() without a callback sends a non-blocking invocation (no invocationId).
"""

import asyncio
import contextlib
import unittest

from pysignalr.client import SignalRClient
from pysignalr.protocol.json import JSONProtocol
from pysignalr.protocol.messagepack import MessagepackProtocol
from websockets.protocol import State

from gateway_harness import DEADLINE, NESTED_VALUE, UNICODE_TEXT, start_gateway

HUB_PATH = "/hubs/pysignalr"


class Client:
    """One pysignalr SignalRClient running in a task, with awaitable calls and receipts."""

    def __init__(self, url, name, protocol):
        self.name = name
        self.client = SignalRClient(url, protocol=protocol, connection_timeout=int(DEADLINE))
        self.opened = asyncio.Event()
        self.close_callbacks = 0
        self.errors = []  # Completions with an error, as the on_error callback got them
        self.task = None
        self._cond = asyncio.Condition()
        self._received = {}  # target -> list of argument lists

        async def on_open():
            self.opened.set()

        async def on_close():
            self.close_callbacks += 1

        async def on_error(message):
            self.errors.append(message)

        self.client.on_open(on_open)
        self.client.on_close(on_close)
        self.client.on_error(on_error)

    @property
    def websocket(self):
        return self.client._transport._ws

    async def start(self, test):
        self.task = asyncio.create_task(self.client.run(), name=f"pysignalr-{self.name}")
        opened = asyncio.create_task(self.opened.wait())
        done, _ = await asyncio.wait({self.task, opened}, timeout=DEADLINE, return_when=asyncio.FIRST_COMPLETED)
        if opened not in done:
            opened.cancel()
            failure = self.task.exception() if self.task in done else None
            test.fail(f"{self.name}: not connected within {DEADLINE}s; run() ended with: {failure!r}")

    async def stop(self):
        """Stops the client the way pysignalr's README does: cancel the task running run()."""
        if self.task is None or self.task.done():
            return
        websocket = self.websocket
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, DEADLINE)
        if websocket is not None:
            await asyncio.wait_for(websocket.wait_closed(), DEADLINE)
        return websocket

    # -- receiving --------------------------------------------------------------------------
    def listen(self, target):
        self._received.setdefault(target, [])

        async def handler(arguments):
            async with self._cond:
                self._received[target].append(list(arguments))
                self._cond.notify_all()

        self.client.on(target, handler)

    def received(self, target):
        return list(self._received.get(target, []))

    async def wait_for(self, target, count=1):
        """Waits until `count` invocations of `target` arrived; returns them all."""
        async with self._cond:
            try:
                await asyncio.wait_for(
                    self._cond.wait_for(lambda: len(self._received.get(target, [])) >= count), DEADLINE
                )
            except asyncio.TimeoutError:
                raise AssertionError(
                    f"{self.name}: expected {count} '{target}' message(s) within {DEADLINE}s, "
                    f"got {self.received(target)}"
                ) from None
        return self.received(target)

    # -- invoking ---------------------------------------------------------------------------
    async def call(self, method, arguments):
        """Invokes a hub method; returns (result, error text or None)."""
        completion = asyncio.get_running_loop().create_future()

        async def on_invocation(message):
            if not completion.done():
                completion.set_result(message)

        await self.client.send(method, arguments, on_invocation=on_invocation)
        try:
            message = await asyncio.wait_for(completion, DEADLINE)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"{self.name}: no completion for {method}{arguments} within {DEADLINE}s"
            ) from None
        return message.result, message.error

    async def invoke(self, method, arguments):
        """Invokes a hub method and returns its result (a failed invocation raises)."""
        result, error = await self.call(method, arguments)
        if error:
            raise AssertionError(f"{self.name}: {method}{arguments} failed: {error}")
        return result


class PysignalrCases:
    """The cases both protocols run; subclasses set PROTOCOL and METRIC_PROTOCOL."""

    PROTOCOL = None  # a pysignalr Protocol class
    METRIC_PROTOCOL = None  # protocol label of hubgate_connections

    def setUp(self):
        self.gateway = start_gateway(self)
        self.clients = []

    async def asyncTearDown(self):
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.stop()

    async def connect(self, name):
        client = Client(self.gateway.url(HUB_PATH), name, self.PROTOCOL())
        self.clients.append(client)
        await client.start(self)
        return client

    async def wait_metric(self, name, expected, **labels):
        await asyncio.to_thread(self.gateway.wait_metric, name, expected, **labels)

    async def metric(self, name, **labels):
        return await asyncio.to_thread(self.gateway.metric, name, **labels)

    # -- cases ------------------------------------------------------------------------------
    async def test_connects(self):
        client = await self.connect("a")
        self.assertIs(client.websocket.state, State.OPEN)
        # The gateway counts it as a WebSocket connection with the protocol the client chose.
        await self.wait_metric("hubgate_connections", 1, transport="websockets", protocol=self.METRIC_PROTOCOL)
        self.assertEqual(await self.metric("hubgate_connections"), 1)
        # negotiate v0: the `id` of the WebSocket request is the connection id the hub sees.
        connection_id = await client.invoke("GetConnectionId", [])
        self.assertIsInstance(connection_id, str)
        self.assertIn(f"id={connection_id}", client.websocket.request.path)

    async def test_echo_unicode_and_nested_values(self):
        client = await self.connect("a")
        self.assertEqual(await client.invoke("Echo", [UNICODE_TEXT]), UNICODE_TEXT)
        self.assertEqual(await client.invoke("Echo", [NESTED_VALUE]), NESTED_VALUE)
        self.assertEqual(await client.invoke("Echo", [[1, "two", [3, [4, [5]]]]]), [1, "two", [3, [4, [5]]]])
        self.assertIsNone(await client.invoke("Echo", [None]))
        self.assertEqual(client.errors, [])

    async def test_unknown_method_error(self):
        client = await self.connect("a")
        result, error = await client.call("NoSuchMethod", [1, "x"])
        self.assertIsNone(result)
        self.assertEqual(error, "Unknown hub method 'NoSuchMethod'")
        self.assertEqual([m.error for m in client.errors], ["Unknown hub method 'NoSuchMethod'"])
        # The connection survives an unknown method.
        self.assertEqual(await client.invoke("Echo", ["still-there"]), "still-there")

    async def test_non_blocking_invocation(self):
        a = await self.connect("a")
        b = await self.connect("b")
        a.listen("message")
        b.listen("message")
        # pysignalr's send() without a callback: an Invocation without an invocationId (a nil
        # one in MessagePack), which the hub runs without answering.
        await a.client.send("SendToAll", ["message", "fire and forget", NESTED_VALUE])
        self.assertEqual(await a.wait_for("message"), [["fire and forget", NESTED_VALUE]])
        self.assertEqual(await b.wait_for("message"), [["fire and forget", NESTED_VALUE]])
        self.assertEqual(await a.invoke("Echo", ["next"]), "next")
        self.assertEqual(a.errors, [])

    async def test_send_to_all_reaches_every_client(self):
        a = await self.connect("a")
        b = await self.connect("b")
        a.listen("message")
        b.listen("message")
        self.assertIsNone(await a.invoke("SendToAll", ["message", UNICODE_TEXT, NESTED_VALUE]))
        self.assertEqual(await a.wait_for("message"), [[UNICODE_TEXT, NESTED_VALUE]])
        self.assertEqual(await b.wait_for("message"), [[UNICODE_TEXT, NESTED_VALUE]])

    async def test_group_messages_reach_members_only(self):
        group = "pysignalr-group ✓"
        member1 = await self.connect("member1")
        member2 = await self.connect("member2")
        outsider = await self.connect("outsider")
        for client in (member1, member2, outsider):
            client.listen("groupMessage")
            client.listen("marker")
        self.assertIsNone(await member1.invoke("JoinGroup", [group]))
        self.assertIsNone(await member2.invoke("JoinGroup", [group]))

        await outsider.invoke("SendToGroup", [group, "groupMessage", "to-group", 7, NESTED_VALUE])
        self.assertEqual(await member1.wait_for("groupMessage"), [["to-group", 7, NESTED_VALUE]])
        self.assertEqual(await member2.wait_for("groupMessage"), [["to-group", 7, NESTED_VALUE]])
        # A later broadcast reaches the outsider over the same ordered connection: once it is
        # there, a group message would have arrived before it.
        await outsider.invoke("SendToAll", ["marker", "after-group"])
        await outsider.wait_for("marker")
        self.assertEqual(outsider.received("groupMessage"), [])

        # After LeaveGroup the former member gets nothing either.
        self.assertIsNone(await member2.invoke("LeaveGroup", [group]))
        await outsider.invoke("SendToGroup", [group, "groupMessage", "second"])
        self.assertEqual(
            await member1.wait_for("groupMessage", count=2), [["to-group", 7, NESTED_VALUE], ["second"]]
        )
        await outsider.invoke("SendToAll", ["marker", "after-leave"])
        await member2.wait_for("marker", count=2)
        self.assertEqual(member2.received("groupMessage"), [["to-group", 7, NESTED_VALUE]])
        self.assertEqual(outsider.received("groupMessage"), [])

    async def test_send_to_connection_reaches_that_connection_only(self):
        sender = await self.connect("sender")
        target = await self.connect("target")
        other = await self.connect("other")
        for client in (sender, target, other):
            client.listen("direct")
        target_id = await target.invoke("GetConnectionId", [])
        other_id = await other.invoke("GetConnectionId", [])
        self.assertNotEqual(target_id, other_id)

        self.assertIsNone(
            await sender.invoke("SendToConnection", [target_id, "direct", "just for you", NESTED_VALUE])
        )
        self.assertEqual(await target.wait_for("direct"), [["just for you", NESTED_VALUE]])
        # A later message to `other` from the same sender: once it is there, a misrouted first
        # message would have arrived before it.
        await sender.invoke("SendToConnection", [other_id, "direct", "second"])
        self.assertEqual(await other.wait_for("direct"), [["second"]])
        self.assertEqual(sender.received("direct"), [])
        self.assertEqual(target.received("direct"), [["just for you", NESTED_VALUE]])

    async def test_stop_closes_cleanly(self):
        client = await self.connect("a")
        self.assertEqual(await client.invoke("Echo", ["before-stop"]), "before-stop")
        await self.wait_metric("hubgate_connections", 1, transport="websockets", protocol=self.METRIC_PROTOCOL)
        websocket = await client.stop()
        self.assertTrue(client.task.cancelled(), "run() ended otherwise than by the cancellation")
        # The closing handshake completed: the gateway answered the client's Close frame with
        # the same code.
        self.assertIs(websocket.state, State.CLOSED)
        self.assertIsNotNone(websocket.protocol.close_rcvd, "the gateway sent no WebSocket Close frame")
        self.assertEqual(websocket.protocol.close_rcvd.code, websocket.protocol.close_sent.code)
        # The gateway ended the connection as a closed transport, not as a protocol error or a
        # timeout.
        await self.wait_metric("hubgate_connections", 0, transport="websockets", protocol=self.METRIC_PROTOCOL)
        await self.wait_metric("hubgate_disconnects_total", 1)
        self.assertEqual(await self.metric("hubgate_disconnects_total", reason="transport_closed"), 1)
        # The gateway is still serving others.
        other = await self.connect("b")
        self.assertEqual(await other.invoke("Echo", ["after-stop"]), "after-stop")


class PysignalrWebSocketsJson(PysignalrCases, unittest.IsolatedAsyncioTestCase):
    PROTOCOL = JSONProtocol
    METRIC_PROTOCOL = "json"


class PysignalrWebSocketsMessagePack(PysignalrCases, unittest.IsolatedAsyncioTestCase):
    PROTOCOL = MessagepackProtocol
    METRIC_PROTOCOL = "messagepack"

    async def test_echo_binary(self):
        client = await self.connect("a")
        payload = bytes(range(256))
        self.assertEqual(await client.invoke("Echo", [payload]), payload)
        nested = {"blob": b"\x00\xff", "list": [b""]}
        self.assertEqual(await client.invoke("Echo", [nested]), nested)


if __name__ == "__main__":
    unittest.main()
