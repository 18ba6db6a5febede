"""The k6 scripts in loadtest/k6 run with the real k6 against the gateway binary.

Run (from the repository root, in a venv with loadtest/k6/requirements.txt installed):

    HUBGATE_BIN=target/debug/gateway K6_BIN=$VIRTUAL_ENV/bin/k6 \
        python -m unittest discover -s loadtest/k6 -v

Each script runs for a few seconds; the test reads k6's --summary-export and checks the counts
are consistent (every echo answered, every published message delivered to every subscriber)
and that k6 passed its thresholds (exit code 0).
"""

import json
import os
import subprocess
import tempfile
import unittest

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
RUN_DEADLINE = 120  # seconds for one k6 run


class Gateway:
    """The gateway binary on a free loopback port (it prints the address it bound)."""

    def __init__(self, binary):
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--log", "error"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        # The first line is the address (the binary prints it once bound, or exits).
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"the gateway did not start: {line!r}")
        self.url = line.split()[-1]

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


def k6_run(script, env):
    """Runs `script` with k6 and returns (exit code, exported summary)."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = os.path.join(tmp, "summary.json")
        args = [os.environ["K6_BIN"], "run", "--quiet", "--no-usage-report", "--summary-export", summary]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        done = subprocess.run(args + [os.path.join(SCRIPTS, script)], capture_output=True, text=True,
                              timeout=RUN_DEADLINE)
        with open(summary) as f:
            return done.returncode, json.load(f), done.stdout + done.stderr


class K6ScriptsTest(unittest.TestCase):
    def setUp(self):
        self.gateway = Gateway(os.environ["HUBGATE_BIN"])
        self.addCleanup(self.gateway.stop)

    def test_echo_answers_every_invocation(self):
        code, summary, output = k6_run("echo.js", {
            "HUB_URL": f"{self.gateway.url}/hubs/k6", "VUS": 5, "RATE": 10, "DURATION": "3s",
            "SESSION_SECONDS": 2})
        self.assertEqual(code, 0, output)
        metrics = summary["metrics"]
        echoes = metrics["echoes"]["count"]
        self.assertGreater(echoes, 0)
        self.assertIn("p(95)", metrics["echo_rtt"])
        # One 'echoed' check per answer plus one 'handshake accepted' per session, none failed.
        self.assertEqual(metrics["checks"]["fails"], 0, output)
        self.assertGreater(metrics["checks"]["passes"], echoes)

    def test_broadcast_delivers_every_message_to_every_subscriber(self):
        subscribers = 20
        code, summary, output = k6_run("broadcast.js", {
            "HUB_URL": f"{self.gateway.url}/hubs/k6", "SUBSCRIBERS": subscribers, "RATE": 20, "SECONDS": 2})
        self.assertEqual(code, 0, output)
        metrics = summary["metrics"]
        published = metrics["published"]["count"]
        self.assertGreater(published, 0)
        self.assertEqual(metrics["deliveries"]["count"], subscribers * published, output)


if __name__ == "__main__":
    unittest.main()
