package dev.hubgate.conformance;

import static dev.hubgate.conformance.Clients.await;
import static dev.hubgate.conformance.Clients.failure;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.microsoft.signalr.HubConnection;
import com.microsoft.signalr.HubConnectionState;
import dev.hubgate.conformance.Clients.Received;
import dev.hubgate.conformance.Clients.Transport;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The official Java client on the gateway's relay hub (/hubs/NAME) with HS256 tokens
 * (--jwt-secret): groups, users from the token's sub claim, and the order of one sender's messages.
 */
@ExtendWith(DumpLogsOnFailure.class)
class RelayHubTest {
    private static final String SECRET = "java-conformance-secret";
    private static GatewayProcess gateway;
    private Clients clients;

    @BeforeAll
    static void startGateway() throws Exception {
        gateway = GatewayProcess.start("HUBGATE_BIN", 0, "--jwt-secret", SECRET);
    }

    @AfterAll
    static void stopGateway() throws Exception {
        if (gateway != null) {
            gateway.stop();
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

    private static String tokenFor(String user) {
        return Jwt.hs256(user, SECRET, 3600);
    }

    private HubConnection user(String name, Transport transport) {
        return clients.connect(gateway.hub("/hubs/chat"), transport, tokenFor(name));
    }

    /** An invoke on {@code connection}: everything the server queued for it before has arrived once this returns. */
    private static void roundTrip(HubConnection connection) {
        assertEquals("round trip", await(connection.invoke(String.class, "Echo", "round trip"), "a round trip"));
    }

    private static Transport other(Transport transport) {
        return transport == Transport.WEBSOCKETS ? Transport.LONG_POLLING : Transport.WEBSOCKETS;
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void echoAndTheConnectionIdTheServerKnows(Transport transport) {
        HubConnection alice = user("alice", transport);

        assertEquals("héllo", await(alice.invoke(String.class, "Echo", "héllo"), "Echo"));
        assertEquals(alice.getConnectionId(), await(alice.invoke(String.class, "GetConnectionId"), "GetConnectionId"));
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void groupSendsReachTheMembersOnlyAndLeaveGroupTakesEffect(Transport transport) {
        String room = "room-" + transport;
        HubConnection alice = user("alice", transport);
        HubConnection bob = user("bob", other(transport));
        HubConnection carol = user("carol", transport);
        Received<String> atAlice = Received.on(alice, "note", String.class);
        Received<String> atBob = Received.on(bob, "note", String.class);
        Received<String> atCarol = Received.on(carol, "note", String.class);

        await(alice.invoke("JoinGroup", room), "alice JoinGroup");
        await(bob.invoke("JoinGroup", room), "bob JoinGroup");
        await(alice.invoke("SendToGroup", room, "note", "hello room"), "SendToGroup");

        assertEquals("hello room", atAlice.next());
        assertEquals("hello room", atBob.next());
        roundTrip(carol);
        assertEquals(List.of(), atCarol.pending(), "carol is not in the group");

        await(bob.invoke("LeaveGroup", room), "bob LeaveGroup");
        await(alice.invoke("SendToGroup", room, "note", "after bob left"), "SendToGroup after LeaveGroup");
        assertEquals("after bob left", atAlice.next());
        roundTrip(bob);
        assertEquals(List.of(), atBob.pending(), "bob left the group");

        await(carol.invoke("SendToOthersInGroup", room, "note", "from outside"), "SendToOthersInGroup by a non-member");
        assertEquals("from outside", atAlice.next());
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void sendToUserReachesEveryConnectionOfThatUserFromTheTokensSub(Transport transport) {
        HubConnection alice1 = user("alice", transport);
        HubConnection alice2 = user("alice", other(transport));
        HubConnection bob = user("bob", transport);
        Received<String> atAlice1 = Received.on(alice1, "note", String.class);
        Received<String> atAlice2 = Received.on(alice2, "note", String.class);
        Received<String> atBob = Received.on(bob, "note", String.class);

        await(bob.invoke("SendToUser", "alice", "note", "hi alice"), "SendToUser alice");

        assertEquals("hi alice", atAlice1.next());
        assertEquals("hi alice", atAlice2.next());
        roundTrip(bob);
        assertEquals(List.of(), atBob.pending(), "bob must not receive a note sent to alice");

        await(alice1.invoke("SendToUser", "alice", "note", "to myself"), "SendToUser to the caller's own user");
        assertEquals("to myself", atAlice1.next());
        assertEquals("to myself", atAlice2.next());
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void clientsWithoutAValidTokenAreRefused(Transport transport) {
        String url = gateway.hub("/hubs/chat");
        List<String> refusals = new ArrayList<>();
        for (String token : new String[] {null, Jwt.hs256("mallory", "another-secret", 3600), Jwt.hs256("alice", SECRET, -3600)}) {
            HubConnection connection = clients.build(url, transport, token);
            Throwable error = failure(connection.start(), "start() with token " + token);
            assertEquals(HubConnectionState.DISCONNECTED, connection.getConnectionState());
            refusals.add(error.getMessage());
        }
        for (String refusal : refusals) {
            assertTrue(refusal.contains("401"), "the refusal names status 401: " + refusal);
        }
    }

    /**
     * One sender, fire-and-forget sends as fast as the client makes them, to a group and to a
     * connection: the receiver gets every one, in the order they were sent, with the default
     * --max-parallel-invocations and with it raised to 16 (relay sends keep the sender's order
     * whatever the limit). The Java client's long polling sends its POSTs side by side; the sender
     * uses the OrderedPosts workaround there so that the test measures the server's order.
     */
    @ParameterizedTest
    @EnumSource(Transport.class)
    void oneSendersMessagesArriveInOrderNoneLost(Transport transport) throws Exception {
        assertInOrder(gateway, transport, "default limit");
        try (GatewayProcess raised = GatewayProcess.start("HUBGATE_BIN", 0,
                "--jwt-secret", SECRET, "--max-parallel-invocations", "16")) {
            assertInOrder(raised, transport, "--max-parallel-invocations 16");
        }
    }

    private void assertInOrder(GatewayProcess server, Transport transport, String setting) {
        int count = 300;
        String room = "order-" + transport;
        List<OrderedPosts> ordered = new ArrayList<>();
        HubConnection sender = clients.connect(server.hub("/hubs/chat"), transport, tokenFor("sender"),
                transport == Transport.LONG_POLLING ? b -> ordered.add(OrderedPosts.apply(b)) : null);
        HubConnection receiver = clients.connect(server.hub("/hubs/chat"), transport, tokenFor("receiver"));
        List<Integer> viaGroup = new CopyOnWriteArrayList<>();
        List<Integer> viaConnection = new CopyOnWriteArrayList<>();
        CompletableFuture<Void> allArrived = new CompletableFuture<>();
        Runnable check = () -> {
            if (viaGroup.size() >= count && viaConnection.size() >= count) {
                allArrived.complete(null);
            }
        };
        receiver.on("g", (Integer n) -> {
            viaGroup.add(n);
            check.run();
        }, Integer.class);
        receiver.on("c", (Integer n) -> {
            viaConnection.add(n);
            check.run();
        }, Integer.class);
        await(receiver.invoke("JoinGroup", room), "receiver JoinGroup");

        for (int i = 0; i < count; i++) {
            sender.send("SendToGroup", room, "g", i);
            sender.send("SendToConnection", receiver.getConnectionId(), "c", i);
        }

        try {
            allArrived.get(20, TimeUnit.SECONDS);
        } catch (Exception e) {
            // Reported below with what did arrive.
        }
        // A POST that waited 10 s for its predecessor (OkHttp's per-host limit deadlocked the
        // ordering workaround, now given room: see OrderedPosts) is reported for diagnosis;
        // the order and completeness assertions below hold for every message.
        for (OrderedPosts posts : ordered) {
            if (!posts.stalls().isEmpty()) {
                System.err.println("[order test] slow POST answers, " + setting + ": " + posts.stalls());
            }
        }
        List<Integer> expected = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            expected.add(i);
        }
        String inOrder = describeOrder(expected);
        assertEquals("SendToGroup: " + inOrder + "; SendToConnection: " + inOrder,
                "SendToGroup: " + describeOrder(viaGroup) + "; SendToConnection: " + describeOrder(viaConnection),
                "what arrived, " + setting);
    }

    /** The count, how many are out of place, and the first positions where the order breaks. */
    private static String describeOrder(List<Integer> received) {
        List<Integer> copy = new ArrayList<>(received);
        int outOfPlace = 0;
        List<String> breaks = new ArrayList<>();
        for (int i = 0; i < copy.size(); i++) {
            if (copy.get(i) != i) {
                outOfPlace++;
                if (breaks.size() < 5) {
                    breaks.add("#" + i + "=" + copy.get(i));
                }
            }
        }
        return copy.size() + " received, " + outOfPlace + " out of place" + (breaks.isEmpty() ? "" : " " + breaks);
    }
}
