package dev.hubgate.conformance;

import static dev.hubgate.conformance.Clients.await;
import static dev.hubgate.conformance.Clients.failure;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.microsoft.signalr.HubConnection;
import com.microsoft.signalr.HubConnectionState;
import com.microsoft.signalr.HubException;
import com.microsoft.signalr.TypeReference;
import dev.hubgate.conformance.Clients.Received;
import dev.hubgate.conformance.Clients.Transport;
import io.reactivex.rxjava3.core.Single;
import io.reactivex.rxjava3.disposables.Disposable;
import io.reactivex.rxjava3.subjects.PublishSubject;
import io.reactivex.rxjava3.subjects.ReplaySubject;
import java.io.IOException;
import java.lang.reflect.Type;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The official Java client against the test hub example (HUBGATE_TESTHUB_BIN, the methods of the
 * official client's functional-test hub, detailed errors on), on WebSockets and long polling with
 * the JSON protocol.
 */
@ExtendWith(DumpLogsOnFailure.class)
class TestHubTest {
    private static GatewayProcess hub;
    private Clients clients;

    @BeforeAll
    static void startTestHub() throws Exception {
        hub = GatewayProcess.start("HUBGATE_TESTHUB_BIN", 0);
    }

    @AfterAll
    static void stopTestHub() throws Exception {
        if (hub != null) {
            hub.stop();
        }
    }

    @BeforeEach
    void newClients() {
        clients = new Clients();
    }

    @AfterEach
    void stopClients() {
        clients.close();
    }

    private HubConnection open(Transport transport) {
        return clients.connect(hub.hub("/testhub"), transport);
    }

    /** The text of GET /clientresult/{id}: the test hub asks that client's `Result` handler for an int. */
    private static String clientResult(String connectionId) throws IOException, InterruptedException {
        HttpRequest request = HttpRequest.newBuilder(URI.create(hub.url + "/clientresult/" + connectionId))
                .timeout(Clients.WAIT)
                .GET()
                .build();
        HttpResponse<String> response = HttpClient.newHttpClient().send(request, HttpResponse.BodyHandlers.ofString());
        assertEquals(200, response.statusCode(), "GET /clientresult: " + response.body());
        return response.body();
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void echoesUnicodeReportsTransportAndConnectionIdThenStopsCleanly(Transport transport) {
        HubConnection connection = open(transport);
        CompletableFuture<Exception> closed = Clients.closed(connection);

        assertEquals("你好，世界！ 🎉", await(connection.invoke(String.class, "Echo", "你好，世界！ 🎉"), "Echo"));
        assertEquals(transport.serverName, await(connection.invoke(String.class, "GetActiveTransportName"), "GetActiveTransportName"));
        assertEquals(connection.getConnectionId(),
                await(connection.invoke(String.class, "GetCallerConnectionId"), "GetCallerConnectionId"));

        await(connection.stop(), "stop()");
        Exception onClosed = await(closed, Clients.WAIT, "onClosed after stop()");
        if (transport == Transport.LONG_POLLING && onClosed != null) {
            // A Java client quirk: stop() does not cancel the poll it has in flight, and when that
            // poll reaches the server after stop()'s DELETE it is answered 404, as the official
            // server answers it; the client then reports that 404 as the reason it closed.
            assertEquals("Unexpected response code 404.", onClosed.getMessage());
        } else {
            assertNull(onClosed, "a clean stop closes without an exception");
        }
        assertEquals(HubConnectionState.DISCONNECTED, connection.getConnectionState());
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void echoesNestedValuesAndA24KilobyteString(Transport transport) {
        HubConnection connection = open(transport);
        Map<String, Object> nested = new LinkedHashMap<>();
        nested.put("name", "ünïcödé");
        nested.put("list", List.of(1.5, "two", List.of(true, false), Map.of("deep", List.of(Map.of("deeper", "yes")))));
        nested.put("empty", Map.of());
        nested.put("nulls", Arrays.asList(null, "after null"));
        Type mapType = new TypeReference<Map<String, Object>>() {}.getType();

        Map<String, Object> echoed = await(connection.invoke(mapType, "Echo", nested), "Echo of a nested map");
        assertEquals(nested, echoed);

        String large = "0123456789abcdef".repeat(24 * 64);
        assertEquals(large, await(connection.invoke(String.class, "Echo", large), "Echo of 24 KB"));
    }

    /** The object the test hub's SendCustomObject takes and sends back (Gson maps fields by name). */
    static final class CustomObject {
        String Name;
        int Value;
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void sendReachesTheServerAndServerCallsReachHandlers(Transport transport) {
        HubConnection connection = open(transport);
        Received<String> messages = Received.on(connection, "Message", String.class);
        Received<CustomObject> objects = Received.on(connection, "CustomObject", CustomObject.class);

        connection.send("Echo", "fire and forget");
        await(connection.invoke("InvokeWithString", "hello"), "InvokeWithString");
        assertEquals("hello", messages.next());

        CustomObject object = new CustomObject();
        object.Name = "test";
        object.Value = 42;
        connection.send("SendCustomObject", object);
        CustomObject back = objects.next();
        assertEquals("test", back.Name);
        assertEquals(42, back.Value);
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void errorTextsOfThrowingAndUnknownMethods(Transport transport) {
        HubConnection connection = open(transport);

        Throwable thrown = failure(connection.invoke("ThrowException", "An error occurred."), "ThrowException");
        assertInstanceOf(HubException.class, thrown);
        assertEquals("An unexpected error occurred invoking 'ThrowException' on the server. "
                + "InvalidOperationException: An error occurred.", thrown.getMessage());

        Throwable unknown = failure(connection.invoke(String.class, "NoSuchMethod", 1), "NoSuchMethod");
        assertInstanceOf(HubException.class, unknown);
        assertEquals("Unknown hub method 'NoSuchMethod'", unknown.getMessage());

        Throwable mismatched = failure(connection.invoke("Stream"), "invoke of the streaming method Stream");
        assertEquals("The client attempted to invoke the streaming 'Stream' method with a non-streaming invocation.",
                mismatched.getMessage());

        assertEquals("still connected", await(connection.invoke(String.class, "Echo", "still connected"), "Echo after errors"));
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void serverToClientStreams(Transport transport) {
        HubConnection connection = open(transport);

        assertEquals(List.of("a", "b", "c"),
                await(connection.stream(String.class, "Stream").toList(), "the items of Stream"));
        assertEquals(List.of(), await(connection.stream(Long.class, "EmptyStream").toList(), "the items of EmptyStream"));

        Throwable error = failure(connection.stream(Long.class, "StreamThrowException", "An error occurred.").toList(),
                "StreamThrowException");
        assertEquals("An unexpected error occurred invoking 'StreamThrowException' on the server. "
                + "InvalidOperationException: An error occurred.", error.getMessage());

        Throwable wrongKind = failure(connection.stream(String.class, "Echo", "42").toList(), "stream of the method Echo");
        assertEquals("The client attempted to invoke the non-streaming 'Echo' method with a streaming invocation.",
                wrongKind.getMessage());
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void disposingAnInfiniteStreamCancelsItOnTheServer(Transport transport) {
        HubConnection connection = open(transport);
        Received<Boolean> canceled = Received.onNoArguments(connection, "StreamCanceled");
        CompletableFuture<Long> firstItem = new CompletableFuture<>();

        Disposable subscription = connection.stream(Long.class, "InfiniteStream").subscribe(firstItem::complete, firstItem::completeExceptionally);
        assertEquals(1L, await(firstItem, Clients.WAIT, "the first item of InfiniteStream"));
        subscription.dispose();

        canceled.next();
        assertEquals("after cancel", await(connection.invoke(String.class, "Echo", "after cancel"), "Echo after the cancel"));
    }

    /**
     * On long polling the Java client's POSTs race each other (see {@link OrderedPosts}), so an
     * upload's items can reach the server before the invocation that opens the stream; the
     * long-polling client here uses the OrderedPosts workaround.
     */
    @ParameterizedTest
    @EnumSource(Transport.class)
    void clientToServerUploadStreams(Transport transport) {
        HubConnection connection = clients.connect(hub.hub("/testhub"), transport, null,
                transport == Transport.LONG_POLLING ? OrderedPosts::apply : null);

        for (int round = 1; round <= 5; round++) {
            ReplaySubject<String> parts = ReplaySubject.create();
            CompletableFuture<String> result = connection.invoke(String.class, "StreamingConcat", parts)
                    .toCompletionStage().toCompletableFuture();
            for (String part : List.of("Hello ", "world", "!", " #" + round)) {
                parts.onNext(part);
            }
            parts.onComplete();
            assertEquals("Hello world! #" + round, await(result, Clients.WAIT, "StreamingConcat of four parts, round " + round));
        }

        PublishSubject<String> failing = PublishSubject.create();
        CompletableFuture<String> failed = connection.invoke(String.class, "StreamingConcat", failing)
                .toCompletionStage().toCompletableFuture();
        failing.onNext("partial");
        failing.onError(new RuntimeException("Something bad"));
        Throwable error = failure(Single.fromCompletionStage(failed), "StreamingConcat of a failing upload");
        // The Java client ends a failed upload with the exception's toString() as the error.
        assertEquals("An unexpected error occurred invoking 'StreamingConcat' on the server. "
                + "HubException: java.lang.RuntimeException: Something bad", error.getMessage());
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void clientResultsAValueAnErrorAndNoHandler(Transport transport) throws Exception {
        HubConnection answering = open(transport);
        answering.onWithResult("Result", () -> Single.just(10));
        assertEquals("10", clientResult(answering.getConnectionId()));

        HubConnection failing = open(transport);
        failing.onWithResult("Result", () -> Single.<Integer>error(new RuntimeException("from callback")));
        assertEquals("from callback", clientResult(failing.getConnectionId()));

        // Without a handler the Java client answers with its own text (the JS client says "didn't").
        HubConnection silent = open(transport);
        assertEquals("Client did not provide a result.", clientResult(silent.getConnectionId()));
    }

    /**
     * stop() sends a SignalR Close, the server answers with one and a WebSocket close frame, and
     * the client answers those. A server that drops the TCP connection right after its close frame,
     * instead of waiting for the client's (RFC 6455 7.1.1), makes the client's last writes fail:
     * stop() then errors with "java.net.SocketException: Broken pipe" or "Connection reset". That
     * is a race lost in a few percent of stops, hence the many stops in a row.
     */
    @Test
    void manyWebSocketStopsInARowAllCompleteCleanly() {
        final int stops = 150;
        List<String> problems = new ArrayList<>();
        for (int i = 1; i <= stops; i++) {
            HubConnection connection = open(Transport.WEBSOCKETS);
            CompletableFuture<Exception> closed = Clients.closed(connection);
            assertEquals("ping " + i, await(connection.invoke(String.class, "Echo", "ping " + i), "Echo"));
            CompletableFuture<Object> stopped = connection.stop().toCompletionStage(null).toCompletableFuture();
            Exception onClosed = await(closed, Clients.WAIT, "onClosed after stop() #" + i);
            try {
                stopped.get(Clients.WAIT.toMillis(), TimeUnit.MILLISECONDS);
            } catch (Exception e) {
                problems.add("stop() #" + i + " failed: " + (e.getCause() != null ? e.getCause() : e));
            }
            if (onClosed != null) {
                problems.add("onClosed #" + i + " got " + onClosed);
            }
        }
        assertEquals(List.of(), problems);
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void headersOfTheClientReachTheHub(Transport transport) {
        HubConnection connection = clients.connect(hub.hub("/testhub"), transport, null, b -> b.withHeader("X-HEADER", "VALUE"));

        assertEquals("VALUE", await(connection.invoke(String.class, "GetHeader", "X-HEADER"), "GetHeader X-HEADER"));
        String agent = await(connection.invoke(String.class, "GetHeader", "User-Agent"), "GetHeader User-Agent");
        assertTrue(agent.startsWith("Microsoft SignalR/"), "User-Agent: " + agent);
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void canBeStoppedAndStartedAgainKeepingItsHandlers(Transport transport) {
        HubConnection connection = clients.build(hub.hub("/testhub"), transport, null);
        Received<String> messages = Received.on(connection, "Message", String.class);

        Clients.start(connection, "first start()");
        String firstId = connection.getConnectionId();
        await(connection.stop(), "stop()");
        Clients.start(connection, "second start()");

        assertTrue(!firstId.equals(connection.getConnectionId()), "a new start() gets a new connection id");
        await(connection.invoke("InvokeWithString", "again"), "InvokeWithString after a restart");
        assertEquals("again", messages.next());
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void sendComplexObjectReturnsTheOfficialTestHubsObject(Transport transport) {
        HubConnection connection = open(transport);
        Type mapType = new TypeReference<Map<String, Object>>() {}.getType();

        Map<String, Object> object = await(connection.invoke(mapType, "SendComplexObject"), "SendComplexObject");

        Map<String, Object> expected = new LinkedHashMap<>();
        expected.put("String", "hello world");
        expected.put("IntArray", List.of(1.0, 2.0, 3.0));
        expected.put("ByteArray", "AQID");
        expected.put("Guid", "00010203-0405-0607-0706-050403020100");
        expected.put("DateTime", "2000-01-01T00:00:00Z");
        assertEquals(expected, object);
    }
}
