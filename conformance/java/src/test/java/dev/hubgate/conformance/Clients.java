package dev.hubgate.conformance;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.microsoft.signalr.HttpHubConnectionBuilder;
import com.microsoft.signalr.HubConnection;
import com.microsoft.signalr.HubConnectionBuilder;
import com.microsoft.signalr.HubConnectionState;
import com.microsoft.signalr.TransportEnum;
import io.reactivex.rxjava3.core.Completable;
import io.reactivex.rxjava3.core.Single;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Consumer;

/**
 * Builds official Java clients for a test and stops every one of them afterwards; waits on the
 * client's Rx types with deadlines (never by sleeping).
 */
final class Clients implements AutoCloseable {
    /** How long a test waits for something that should happen promptly. */
    static final Duration WAIT = Duration.ofSeconds(5);
    /** How long a start() may take (negotiate + transport + handshake). */
    static final Duration START = Duration.ofSeconds(10);

    /** The transports the Java client implements, with the names the server reports for them. */
    enum Transport {
        WEBSOCKETS(TransportEnum.WEBSOCKETS, "WebSockets"),
        LONG_POLLING(TransportEnum.LONG_POLLING, "LongPolling");

        final TransportEnum client;
        final String serverName;

        Transport(TransportEnum client, String serverName) {
            this.client = client;
            this.serverName = serverName;
        }
    }

    private final List<HubConnection> built = new ArrayList<>();

    /** A connection not yet started; {@code token} may be null (no access token). */
    HubConnection build(String url, Transport transport, String token, Consumer<HttpHubConnectionBuilder> more) {
        HttpHubConnectionBuilder builder = HubConnectionBuilder.create(url).withTransport(transport.client);
        if (token != null) {
            builder.withAccessTokenProvider(Single.defer(() -> Single.just(token)));
        }
        if (more != null) {
            more.accept(builder);
        }
        HubConnection connection = builder.build();
        synchronized (built) {
            built.add(connection);
        }
        return connection;
    }

    HubConnection build(String url, Transport transport, String token) {
        return build(url, transport, token, null);
    }

    /** Builds and starts a connection; fails the test if start() does not complete in time. */
    HubConnection connect(String url, Transport transport, String token, Consumer<HttpHubConnectionBuilder> more) {
        HubConnection connection = build(url, transport, token, more);
        start(connection, "start() of a " + transport + " client on " + url);
        return connection;
    }

    HubConnection connect(String url, Transport transport, String token) {
        return connect(url, transport, token, null);
    }

    HubConnection connect(String url, Transport transport) {
        return connect(url, transport, null, null);
    }

    static void start(HubConnection connection, String what) {
        await(connection.start(), START, what);
        assertTrue(connection.getConnectionState() == HubConnectionState.CONNECTED, what + ": state CONNECTED");
    }

    /** Stops every connection this test built (each with a deadline); failures here do not mask the test's. */
    @Override
    public void close() {
        List<HubConnection> all;
        synchronized (built) {
            all = new ArrayList<>(built);
            built.clear();
        }
        for (HubConnection connection : all) {
            if (connection.getConnectionState() != HubConnectionState.DISCONNECTED) {
                try {
                    connection.stop().blockingAwait(WAIT.toMillis(), TimeUnit.MILLISECONDS);
                } catch (RuntimeException e) {
                    // Already closing or closed by the server: nothing to stop.
                }
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Waiting with deadlines

    static <T> T await(CompletableFuture<T> future, Duration deadline, String what) {
        try {
            return future.get(deadline.toMillis(), TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            future.cancel(true);
            return fail("timed out after " + deadline.toMillis() + " ms waiting for " + what);
        } catch (ExecutionException e) {
            return fail(what + " failed: " + e.getCause(), e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return fail("interrupted waiting for " + what);
        }
    }

    static <T> T await(Single<T> single, String what) {
        return await(single.toCompletionStage().toCompletableFuture(), WAIT, what);
    }

    static void await(Completable completable, Duration deadline, String what) {
        await(completable.toCompletionStage(null).toCompletableFuture(), deadline, what);
    }

    static void await(Completable completable, String what) {
        await(completable, WAIT, what);
    }

    /** The error a Single ends with; fails the test if it succeeds or does not end in time. */
    static Throwable failure(Single<?> single, String what) {
        return failure(single.ignoreElement(), what);
    }

    static Throwable failure(Completable completable, String what) {
        CompletableFuture<Object> future = completable.toCompletionStage(null).toCompletableFuture();
        try {
            future.get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
            return fail(what + ": expected an error, but it completed");
        } catch (ExecutionException e) {
            return e.getCause();
        } catch (TimeoutException e) {
            future.cancel(true);
            return fail("timed out after " + WAIT.toMillis() + " ms waiting for " + what + " to fail");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return fail("interrupted waiting for " + what);
        }
    }

    /** Completes when the connection's onClosed callback runs, with its exception (or null). */
    static CompletableFuture<Exception> closed(HubConnection connection) {
        CompletableFuture<Exception> closed = new CompletableFuture<>();
        connection.onClosed(closed::complete);
        return closed;
    }

    // ----------------------------------------------------------------------------------------
    // Messages the server sends to a client method

    /** Collects the single arguments of one client method's calls. */
    static final class Received<T> {
        private final LinkedBlockingQueue<T> queue = new LinkedBlockingQueue<>();
        private final String what;

        private Received(String what) {
            this.what = what;
        }

        /** Registers a handler for {@code target} taking one argument of {@code type}. */
        static <T> Received<T> on(HubConnection connection, String target, Class<T> type) {
            Received<T> received = new Received<>("'" + target + "'");
            connection.on(target, received.queue::add, type);
            return received;
        }

        /** Registers a handler for {@code target} taking no arguments; each call yields TRUE. */
        static Received<Boolean> onNoArguments(HubConnection connection, String target) {
            Received<Boolean> received = new Received<>("'" + target + "'");
            connection.on(target, () -> received.queue.add(Boolean.TRUE));
            return received;
        }

        /** The next call's argument, waiting at most {@link #WAIT}. */
        T next() {
            try {
                T value = queue.poll(WAIT.toMillis(), TimeUnit.MILLISECONDS);
                if (value == null) {
                    fail("timed out after " + WAIT.toMillis() + " ms waiting for a call of " + what);
                }
                return value;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return fail("interrupted waiting for " + what);
            }
        }

        /** The calls received so far and not yet taken with next(). */
        List<T> pending() {
            List<T> values = new ArrayList<>();
            queue.drainTo(values);
            return values;
        }
    }
}
