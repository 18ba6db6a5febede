package dev.hubgate.conformance;

import static dev.hubgate.conformance.Clients.await;
import static dev.hubgate.conformance.Clients.failure;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

import com.microsoft.signalr.HubConnection;
import com.microsoft.signalr.HubConnectionState;
import dev.hubgate.conformance.Clients.Received;
import dev.hubgate.conformance.Clients.Transport;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Reconnecting after the server restarts. The Java client has no automatic reconnect (no
 * withAutomaticReconnect, no stateful reconnect): what it offers is onClosed, and start() again on
 * the same HubConnection (its handlers kept) or on a new one. So this is what an application does
 * and what is tested: the server's shutdown closes the client (onClosed runs), start() while the
 * server is down fails promptly instead of hanging, and after the server is back on the same port
 * start() on the same connection and on a new one both work, with new connection ids and groups
 * joined again.
 */
@ExtendWith(DumpLogsOnFailure.class)
class ReconnectTest {
    private GatewayProcess gateway;
    private Clients clients;

    @BeforeEach
    void start() throws Exception {
        gateway = GatewayProcess.start("HUBGATE_BIN", 0);
        clients = new Clients();
    }

    @AfterEach
    void stop() throws Exception {
        clients.close();
        gateway.stop();
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void afterTheServerRestartsStartAgainWorksOnTheSameAndOnANewConnection(Transport transport) throws Exception {
        String url = gateway.hub("/hubs/chat");
        int port = gateway.port;
        HubConnection connection = clients.build(url, transport, null);
        Received<String> notes = Received.on(connection, "note", String.class);
        Clients.start(connection, "start() before the restart");
        String firstId = connection.getConnectionId();
        CompletableFuture<Exception> closed = Clients.closed(connection);
        await(connection.invoke("JoinGroup", "room"), "JoinGroup before the restart");

        assertEquals(0, gateway.stop(), "the gateway exits 0 on SIGTERM");
        await(closed, Clients.START, "onClosed once the server shut down");
        assertEquals(HubConnectionState.DISCONNECTED, connection.getConnectionState());
        failure(connection.start(), "start() while the server is down");
        assertEquals(HubConnectionState.DISCONNECTED, connection.getConnectionState());

        gateway = GatewayProcess.start("HUBGATE_BIN", port);
        Clients.start(connection, "start() of the same HubConnection after the restart");
        assertNotEquals(firstId, connection.getConnectionId(), "a new connection id after the restart");
        await(connection.invoke("JoinGroup", "room"), "JoinGroup again after the restart");

        HubConnection fresh = clients.connect(url, transport);
        Received<String> atFresh = Received.on(fresh, "note", String.class);
        await(fresh.invoke("JoinGroup", "room"), "JoinGroup of a new HubConnection");
        await(fresh.invoke("SendToGroup", "room", "note", "after the restart"), "SendToGroup after the restart");

        assertEquals("after the restart", notes.next(), "the handler registered before the restart still runs");
        assertEquals("after the restart", atFresh.next());
        await(fresh.invoke("SendToConnection", connection.getConnectionId(), "note", "direct"), "SendToConnection");
        assertEquals("direct", notes.next());
    }
}
