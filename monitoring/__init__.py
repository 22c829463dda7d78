"""Monitoring, split by who runs it: `agents` (on the hosts), `alerts` (the alert state and the
path a page takes), `integrations` (PagerDuty and Sentry clients); see monitoring/README.md."""
