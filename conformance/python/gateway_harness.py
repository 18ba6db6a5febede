"""Shared by the Python conformance tests: the real gateway binary on a free loopback port.

`Gateway` starts HUBGATE_BIN, waits for /healthz, reads /metrics, keeps the process output in
a temporary file and prints it when a test fails. Every wait is bounded by a deadline; a loop
that re-reads an HTTP endpoint re-reads it after a short pause until the condition holds or the
deadline passes (a bounded poll of an observable condition, never a sleep that synchronises).
"""

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

DEADLINE = 10.0  # seconds for any single expectation
STARTUP_DEADLINE = 30.0  # seconds for the gateway to answer /healthz
POLL_PAUSE = 0.05  # seconds between two reads of an endpoint while waiting for a condition
# signalrcore's stop() over WebSockets returns only after the gateway's next keep-alive Ping
# (see test_signalrcore.py); a keep-alive of one second keeps it short. The default (15 s, as
# in ASP.NET Core) would make every stop take up to 15 s.
KEEP_ALIVE = "1s"

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway_binary(test):
    binary = os.environ.get("HUBGATE_BIN")
    if not binary:
        test.fail("set HUBGATE_BIN to the gateway binary")
    if not os.access(binary, os.X_OK):
        test.fail(f"HUBGATE_BIN={binary} is not an executable file")
    return binary


def wait_until(predicate, what, timeout=DEADLINE):
    """Re-evaluates `predicate` until it returns a truthy value (returned) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last value: {last!r})")
        time.sleep(POLL_PAUSE)


class Gateway:
    """The gateway binary on a free loopback port; its output goes to a temp file."""

    def __init__(self, binary, extra_args=()):
        self.binary = binary
        self.extra_args = list(extra_args)
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
                    *self.extra_args,
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
            time.sleep(POLL_PAUSE)  # bounded retry of the port, not synchronisation
        raise RuntimeError("gateway did not answer /healthz in time")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- metrics ----------------------------------------------------------------------------
    def metrics(self):
        """The /metrics samples as {(name, frozenset of (label, value)): float}."""
        with urllib.request.urlopen(self.url("/metrics"), timeout=DEADLINE) as response:
            text = response.read().decode("utf-8")
        samples = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            match = _SAMPLE.match(line)
            if match is None:
                continue
            name, labels, value = match.groups()
            key = (name, frozenset(_LABEL.findall(labels or "")))
            samples[key] = float(value)
        return samples

    def metric(self, name, **labels):
        """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.metrics().items() if n == name and wanted <= ls)

    def wait_metric(self, name, expected, timeout=DEADLINE, **labels):
        wait_until(
            lambda: self.metric(name, **labels) == expected,
            f"{name}{labels} == {expected} (now {self.metric(name, **labels)})",
            timeout,
        )

    # -- shutdown ---------------------------------------------------------------------------
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


def start_gateway(test, extra_args=()):
    """Starts a gateway for `test`, printed when the test fails and killed in its cleanup."""
    gateway = Gateway(gateway_binary(test), extra_args)
    test.addCleanup(gateway.close)
    test.addCleanup(_print_output_on_failure, test, gateway)
    gateway.start()
    return gateway


def _print_output_on_failure(test, gateway):
    outcome = getattr(test, "_outcome", None)
    result = getattr(outcome, "result", None)
    failed = result is not None and any(t is test for t, _ in result.failures + result.errors)
    if failed or (outcome is not None and not getattr(outcome, "success", True)):
        sys.stderr.write(f"\n--- gateway output ({test.id()}) ---\n{gateway.output()}\n")


# Values both clients must get back unchanged from Echo, in both protocols.
UNICODE_TEXT = "héllo wörld ✓ 日本語 \U0001F680 \"quoted\" \\ back\nslash\ttab \u0000nul"
NESTED_VALUE = {
    "text": "ünïcødé",
    "n": 42,
    "negative": -7,
    "big": 9007199254740993,
    "float": 2.5,
    "flags": [True, False, None],
    "empty": {"list": [], "map": {}, "string": ""},
    "deep": {"a": [1, {"b": [2, {"c": ["ℵ", {"d": [3.25, None]}]}]}]},
    "キー": ["値", {"ключ": "значение"}],
}

