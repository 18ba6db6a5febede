package dev.hubgate.conformance;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The real gateway binary (or the test hub example) as a child process on a loopback port.
 *
 * <p>{@link #start} runs it with {@code --listen 127.0.0.1:PORT} (0 picks a free port) and waits,
 * at most 10 s, for its stdout line {@code listening on http://127.0.0.1:PORT}. Its stderr is kept
 * in memory (the last 200 lines) and printed when a test fails ({@link DumpLogsOnFailure}), or
 * streamed live with {@code HUBGATE_TEST_LOGS=1}. {@link #stop} sends SIGTERM and waits for the
 * exit, SIGKILL after 3 s.
 */
final class GatewayProcess implements AutoCloseable {
    private static final Pattern LISTENING = Pattern.compile("^listening on (http://127\\.0\\.0\\.1:(\\d+))\\s*$");
    private static final long STARTUP_DEADLINE_MS = 10_000;
    private static final long STOP_GRACE_MS = 3_000;
    private static final int LOG_LINES_KEPT = 200;
    private static final boolean LIVE_LOGS = "1".equals(System.getenv("HUBGATE_TEST_LOGS"));

    /** Every process started and not yet stopped, for failure reports and the JVM's exit. */
    static final Set<GatewayProcess> RUNNING = ConcurrentHashMap.newKeySet();

    static {
        Runtime.getRuntime().addShutdownHook(new Thread(() -> RUNNING.forEach(g -> g.process.destroyForcibly())));
    }

    private final Process process;
    private final List<String> args;
    private final Deque<String> logLines;
    final String url;
    final int port;

    private GatewayProcess(Process process, List<String> args, Deque<String> logLines, String url, int port) {
        this.process = process;
        this.logLines = logLines;
        this.args = args;
        this.url = url;
        this.port = port;
    }

    /** The executable named by an environment variable, e.g. HUBGATE_BIN. */
    static Path binary(String variable) {
        String value = System.getenv(variable);
        if (value == null || value.isEmpty()) {
            throw new IllegalStateException(variable + " is not set. Build the gateway and its examples, e.g.\n"
                    + "  CARGO_TARGET_DIR=/var/tmp/hubgate-target cargo build -p gateway --bins --examples\n"
                    + "and set HUBGATE_BIN=/var/tmp/hubgate-target/debug/gateway "
                    + "HUBGATE_TESTHUB_BIN=/var/tmp/hubgate-target/debug/examples/testhub");
        }
        Path bin = Path.of(value).toAbsolutePath();
        if (!Files.isRegularFile(bin) || !Files.isExecutable(bin)) {
            throw new IllegalStateException(variable + "=" + bin + " is not an executable file. Build it first.");
        }
        return bin;
    }

    /** Starts the binary named by {@code variable} on {@code port} (0: a free one) with extra flags. */
    static GatewayProcess start(String variable, int port, String... extraArgs) throws IOException, InterruptedException {
        Path bin = binary(variable);
        List<String> command = new ArrayList<>();
        command.add(bin.toString());
        command.add("--listen");
        command.add("127.0.0.1:" + port);
        command.addAll(List.of(extraArgs));
        ProcessBuilder builder = new ProcessBuilder(command);
        Map<String, String> env = builder.environment();
        // The gateway's own settings come from the flags a test passes, not from the caller's shell.
        env.keySet().removeIf(k -> k.startsWith("HUBGATE_") && !k.equals("HUBGATE_LOG") && !k.equals("HUBGATE_LOG_FORMAT"));
        env.putIfAbsent("RUST_BACKTRACE", "1");
        env.put("NO_COLOR", "1");
        builder.redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        Process process = builder.start();

        CompletableFuture<String[]> listening = new CompletableFuture<>();
        Deque<String> logLines = new ArrayDeque<>();
        java.util.function.Consumer<String> keep = line -> keep(logLines, process, line);
        pump(process.getErrorStream(), "gateway-stderr-" + process.pid(), keep);
        pump(process.getInputStream(), "gateway-stdout-" + process.pid(), line -> {
            Matcher m = LISTENING.matcher(line);
            if (!listening.isDone() && m.matches()) {
                listening.complete(new String[] {m.group(1), m.group(2)});
            } else {
                keep.accept("(stdout) " + line);
            }
        });
        process.onExit().thenRun(() -> listening.completeExceptionally(
                new IllegalStateException("exited with code " + process.exitValue() + " before printing 'listening on ...'")));

        String[] found;
        try {
            found = listening.get(STARTUP_DEADLINE_MS, TimeUnit.MILLISECONDS);
        } catch (ExecutionException | TimeoutException e) {
            process.destroyForcibly();
            String why = e instanceof TimeoutException
                    ? "did not print 'listening on http://127.0.0.1:PORT' within " + STARTUP_DEADLINE_MS + " ms"
                    : e.getCause().getMessage();
            synchronized (logLines) {
                throw new IllegalStateException(String.join(" ", command) + " " + why
                        + "\n--- its last log lines ---\n" + String.join("\n", logLines));
            }
        }
        GatewayProcess gateway = new GatewayProcess(process, command, logLines, found[0], Integer.parseInt(found[1]));
        RUNNING.add(gateway);
        return gateway;
    }

    private static void pump(InputStream stream, String name, java.util.function.Consumer<String> onLine) {
        Thread thread = new Thread(() -> {
            try (BufferedReader reader = new BufferedReader(new InputStreamReader(stream, StandardCharsets.UTF_8))) {
                for (String line; (line = reader.readLine()) != null; ) {
                    onLine.accept(line);
                }
            } catch (IOException e) {
                onLine.accept("(harness: reading " + name + " failed: " + e + ")");
            }
        }, name);
        thread.setDaemon(true);
        thread.start();
    }

    private static void keep(Deque<String> logLines, Process process, String line) {
        synchronized (logLines) {
            logLines.addLast(line);
            if (logLines.size() > LOG_LINES_KEPT) {
                logLines.removeFirst();
            }
        }
        if (LIVE_LOGS) {
            System.err.println("[gateway " + process.pid() + "] " + line);
        }
    }

    /** The hub URL for a path such as {@code /hubs/chat} or {@code /testhub}. */
    String hub(String path) {
        return url + path;
    }

    boolean isAlive() {
        return process.isAlive();
    }

    void dumpLogs(String why) {
        String status = process.isAlive() ? "" : " (exited: code " + process.exitValue() + ")";
        synchronized (logLines) {
            System.err.println("\n----- gateway " + String.join(" ", args) + ": last " + logLines.size()
                    + " log lines (" + why + ")" + status + " -----\n" + String.join("\n", logLines)
                    + "\n----- end of gateway log -----");
        }
    }

    /** SIGTERM, then SIGKILL if it has not exited after 3 s; returns the exit code. */
    int stop() throws InterruptedException {
        if (process.isAlive()) {
            // SIGTERM through the ProcessHandle: Process.destroy() would also close the pipes of
            // stdout and stderr, and the gateway's shutdown logging would then hit EPIPE.
            process.toHandle().destroy();
            if (!process.waitFor(STOP_GRACE_MS, TimeUnit.MILLISECONDS)) {
                keep(logLines, process, "(harness: no exit 3 s after SIGTERM, sending SIGKILL)");
                process.destroyForcibly();
                process.waitFor(STOP_GRACE_MS, TimeUnit.MILLISECONDS);
            }
        }
        RUNNING.remove(this);
        return process.isAlive() ? -1 : process.exitValue();
    }

    @Override
    public void close() throws InterruptedException {
        stop();
    }
}
