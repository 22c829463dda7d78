"""Clients of the services photostack reports to: PagerDuty (events, maintenance windows) and Sentry."""
