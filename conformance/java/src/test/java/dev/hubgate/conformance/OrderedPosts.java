package dev.hubgate.conformance;

import com.microsoft.signalr.HttpHubConnectionBuilder;
import java.io.IOException;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.WeakHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import okhttp3.Call;
import okhttp3.EventListener;
import okhttp3.Interceptor;
import okhttp3.Response;

/**
 * A workaround for a defect of the official Java client's long-polling transport: it sends each
 * message as its own asynchronous POST and does not wait for one to finish before starting the
 * next, so OkHttp runs them side by side on several TCP connections and the server receives them
 * in whatever order they happen to arrive (an upload stream's items before the invocation that
 * opens it, a burst of sends shuffled). This keeps the client itself unmodified and only
 * configures its OkHttp client through the public {@code setHttpClientBuilderCallback}: every
 * POST gets a number when the client creates it (in the order the client sends its messages),
 * and an interceptor lets POST n go out only once POST n-1 has been answered.
 */
final class OrderedPosts {
    /** How long a POST waits for its predecessor before going out anyway (and is recorded as a stall). */
    private static final long MAX_WAIT_MS = 10_000;

    /** Calls OkHttp runs at once for this client: more than any test sends without waiting. */
    private static final int MAX_IN_FLIGHT = 4_096;

    private final Map<Call, Long> numbers = Collections.synchronizedMap(new WeakHashMap<>());
    private final List<String> stalls = new CopyOnWriteArrayList<>();
    private long issued;
    private long answered;

    /** Applies the workaround to a connection being built. */
    static OrderedPosts apply(HttpHubConnectionBuilder builder) {
        OrderedPosts ordered = new OrderedPosts();
        // The client enqueues its POSTs from several threads, so OkHttp may dispatch POST n+1
        // before POST n. With OkHttp's default of 5 calls per host, a few later POSTs waiting
        // here for an earlier one could fill every slot while that earlier one sits in the
        // dispatcher's queue: each waits for the other until MAX_WAIT_MS (seen in CI as a 10 s
        // stall and then reordered messages). Room for every POST of a test avoids that.
        okhttp3.Dispatcher dispatcher = new okhttp3.Dispatcher();
        dispatcher.setMaxRequests(MAX_IN_FLIGHT);
        dispatcher.setMaxRequestsPerHost(MAX_IN_FLIGHT);
        builder.setHttpClientBuilderCallback(ok -> ok
                .dispatcher(dispatcher)
                .eventListenerFactory(ordered::numbered)
                .addInterceptor(ordered::inOrder));
        return ordered;
    }

    /**
     * POSTs that went out without their predecessor's answer because it took longer than 10 s
     * (the server held a POST that long); empty when every POST went out in order.
     */
    List<String> stalls() {
        return List.copyOf(stalls);
    }

    private EventListener numbered(Call call) {
        if ("POST".equals(call.request().method())) {
            synchronized (this) {
                numbers.put(call, issued++);
            }
        }
        return EventListener.NONE;
    }

    private Response inOrder(Interceptor.Chain chain) throws IOException {
        Long number = numbers.get(chain.call());
        if (number == null) {
            return chain.proceed(chain.request());
        }
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(MAX_WAIT_MS);
        synchronized (this) {
            while (answered < number) {
                long left = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
                if (left <= 0) {
                    stalls.add("POST #" + number + " went out after waiting " + MAX_WAIT_MS
                            + " ms for the answer to POST #" + answered);
                    break;
                }
                try {
                    wait(left);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IOException("interrupted waiting for the previous POST", e);
                }
            }
        }
        try {
            return chain.proceed(chain.request());
        } finally {
            synchronized (this) {
                answered = Math.max(answered, number + 1);
                notifyAll();
            }
        }
    }
}
