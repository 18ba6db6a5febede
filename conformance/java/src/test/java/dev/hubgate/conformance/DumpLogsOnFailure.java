package dev.hubgate.conformance;

import java.util.Optional;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.TestWatcher;

/** Prints the kept log lines of every running gateway when a test fails. */
final class DumpLogsOnFailure implements TestWatcher {
    @Override
    public void testFailed(ExtensionContext context, Throwable cause) {
        for (GatewayProcess gateway : GatewayProcess.RUNNING) {
            gateway.dumpLogs(context.getDisplayName() + " failed");
        }
    }

    @Override
    public void testAborted(ExtensionContext context, Throwable cause) {
        testFailed(context, cause);
    }

    @Override
    public void testDisabled(ExtensionContext context, Optional<String> reason) {}
}
