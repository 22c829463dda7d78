"""Fast-path alert latency: seconds from an app process dying to the PagerDuty trigger, and from
its restart to the resolve. Goal: ≤ 60 s each.

    PHOTOSTACK_STATE_DIR=/work/main/.state python bench/alert_latency.py            # the one-box's app-0
    python bench/alert_latency.py --stand-in                                        # no app deployed yet

With the app on the one-box, the watcher probes every nginx and app /health exactly as the
munin_master role configures it (healthProbeIntervalS, thresholds from roles/munin_master/defaults.yaml),
the bench SIGKILLs the gunicorn master of app-0 and later restarts it with `ops converge --role app`.
`--stand-in` replaces app-0 by a loopback HTTP server (stopped, then started on the same port).
Pages go to a local HTTPS PagerDuty Events v2 endpoint (tests/fakes), never to PagerDuty.
The watcher runs in this process with the same code and settings as the installed service.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitoring.alerts.alert_pipeline import AlertPipeline  # noqa: E402
from monitoring.alerts.alert_store import AlertStore  # noqa: E402
from monitoring.agents.health_watcher import PipelinePager, Target, Watcher, probe  # noqa: E402
from monitoring.integrations.pagerduty_events import PagerDutySender, RetryPolicy  # noqa: E402
from monitoring.alerts.silences import SilenceStore  # noqa: E402
from ops.stack import Stack  # noqa: E402
from roles.munin_master.role import watcher_config  # noqa: E402
from tests.fakes.base import LocalServer  # noqa: E402
from tests.fakes.pagerduty_server import PagerDutyServer  # noqa: E402
from tests.fakes.tls import make_certificates  # noqa: E402

LIMIT_S = 120.0  # give up waiting after this long


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args: object) -> None:
        """Quiet."""


class StandIn(LocalServer):
    handler = _Health  # type: ignore[assignment]


def gunicorn_master(port: int) -> int | None:
    """The pid of the gunicorn master bound to `port` (the process whose parent is not gunicorn)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if any("gunicorn" in a for a in argv) and any(a.endswith(f":{port}") for a in argv):
            found[int(pid)] = ppid
    masters = [pid for pid, ppid in found.items() if ppid not in found]
    return masters[0] if masters else None


def restart_app(stack: str, attempts: int = 10) -> None:
    """Converge the app role until the killed process is back. The first tries can fail: the
    killed master's orphaned workers hold its port until they notice their parent is gone."""
    command = [sys.executable, "-m", "ops", "--stack", stack, "converge", "--role", "app"]
    for _ in range(attempts):
        if subprocess.run(command, capture_output=True, timeout=300).returncode == 0:
            return
        time.sleep(1)
    raise SystemExit(f"app-0 did not come back after {attempts} converges")


def wait_for(server: PagerDutyServer, key: str, state: str) -> float:
    """Seconds until the fake PagerDuty shows the incident `key` in `state`."""
    started = time.monotonic()
    while server.incidents.get(key) != state:
        if time.monotonic() - started > LIMIT_S:
            raise SystemExit(f"no {state} for {key} within {LIMIT_S:.0f} s")
        time.sleep(0.05)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stand-in", action="store_true", help="probe a loopback stand-in instead of app-0")
    parser.add_argument("--stack", default="onebox")
    args = parser.parse_args()
    stack = Stack.load(args.stack)
    config = watcher_config(stack.context(stack.hosts[0]))
    app = next((t for t in config.targets if t.node == "app-0"), None)
    stand_in = None
    if args.stand_in or app is None:
        if not args.stand_in:
            print("app role not available: using a loopback stand-in for app-0")
        stand_in = StandIn().start()
        app = Target("app-0", stack.hosts[0].name, f"{stand_in.url}/health")
        config = replace(config, targets=tuple(t for t in config.targets if t.node != "app-0") + (app,))
    ok, error = probe(app.url, config.timeout_s)
    if not ok:
        raise SystemExit(f"{app.url} is not healthy before the test: {error}")

    with tempfile.TemporaryDirectory() as tmp:
        certs = make_certificates(Path(tmp))
        pd = PagerDutyServer(certs.server_context()).start()
        sender = PagerDutySender("BENCHROUTINGKEY00000000000000000", base_url=pd.url,
                                 ca_bundle=str(certs.ca_bundle), retry=RetryPolicy(attempts=2, first_delay_s=0.1))
        store = Path(tmp) / "state"
        store.mkdir()
        pipeline = AlertPipeline(AlertStore(store), SilenceStore(store), sender,
                                 stack.config.alerting.runbook_base_url, stack.config.environment)
        watcher = Watcher(config, PipelinePager(config, pipeline))
        # The watcher keeps its own rhythm, as the installed service does; the kill lands anywhere in it.
        threading.Thread(target=watcher.run, daemon=True).start()
        time.sleep(config.interval_s * 2.5)
        key = f"{args.stack}/{app.host}/health/{app.node}"
        print(f"probing {len(config.targets)} endpoints every {config.interval_s:.0f} s; page after "
              f"{config.failures_to_page} failures, resolve after {config.successes_to_resolve} successes")
        if stand_in:
            stand_in.stop()
        else:
            pid = gunicorn_master(int(app.url.rsplit(":", 1)[1].split("/")[0]))
            if pid is None:
                raise SystemExit("no gunicorn master found for app-0")
            os.kill(pid, signal.SIGKILL)
        paged = wait_for(pd, key, "triggered")
        print(f"kill → PagerDuty trigger:   {paged:6.1f} s  (goal ≤ 60 s)")
        if stand_in:
            stand_in.start()
        else:
            restart_app(args.stack)
        resolved = wait_for(pd, key, "resolved")
        print(f"restart → PagerDuty resolve: {resolved:6.1f} s  (goal ≤ 60 s)")
        pd.stop()
    if stand_in:
        stand_in.stop()
    return 0 if paged <= 60 and resolved <= 60 else 1


if __name__ == "__main__":
    sys.exit(main())
