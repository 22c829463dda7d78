"""Request deadlines for database work: a shard that is slow, lossy or cut off, or a pgbouncer
that is paused or saturated, costs a request at most its route's budget, answered 503 with
`Retry-After` by the app, before nginx gives up on the app server.

Why the app and not nginx alone: nginx counts a read timeout as a failure of the *app server*
(max_fails), and retries the idempotent routes on the next one. A like waiting on a slow shard
times out on every app server in turn, so every app server is marked failed, and for
fail_timeout nginx answers 502 to every request, feed reads included (a fleet drill's lossy
link: 4–8 % 502s). An answer the app gives within the budget is not a failure of anything.

- The budget: nginx sends each route's read timeout as `X-Request-Budget` (milliseconds,
  roles/nginx) with the `X-Request-Start` stamp; the request's deadline is that budget from the
  stamp, less a margin for the rest of the answer. A request older than its budget on arrival
  is nginx's retry after another server timed out (the retry keeps the first stamp): its
  budget starts on arrival. Without the header (a caller other than nginx, /health, Celery)
  there is no deadline.
- The bound: the wait for a pooled connection is cut to what is left, and while a statement
  runs a watchdog thread holds its connection. At the deadline it cancels the statement (the
  cancel goes to the local pgbouncer, which passes it on to the shard: a statement waiting on a
  lock or running long is rolled back, and pgbouncer keeps its server connection); if the
  statement has not ended CUT_AFTER_S later (the cancel crossing a lossy link, a query queued in
  a paused or saturated pgbouncer), it shuts the connection's socket down (the socket, not the
  descriptor: nothing can reuse it meanwhile), so libpq's wait ends at once whatever the
  network or pgbouncer is doing. Server-side `statement_timeout` alone cannot do this (pgbouncer
  in transaction mode keeps no per-client SET, and a lossy link delays its answer too);
  pgbouncer's `query_timeout` is one value for every route and worker.
- What the 503 means: a statement not yet sent, or cancelled, was not done. One whose socket
  was shut down may still commit on the shard (its backend finishes it), so the 503 says "not
  confirmed, try again", never "failed": a like or unlike repeated changes nothing and answers
  the true count. A statement that answered in time keeps its answer (a stored like is answered
  200, even if the watchdog acted a moment later); a connection the watchdog touched is closed,
  never reused (a late cancel could hit its next statement).
"""

from __future__ import annotations

import contextvars
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

# Time kept back from the route's budget for the cancel's grace, the rest of the answer (cache,
# JSON, the way back through nginx) and a busy process's thread scheduling; at most a quarter of
# the budget.
MARGIN_S = 0.25
# After the cancel: how long sending it may take (to the local pgbouncer: well under a
# millisecond; a hung one never answers), and when the socket is shut down if the statement has
# still not ended.
CANCEL_WAIT_S = 0.05
CUT_AFTER_S = 0.1
# After a cancel that could not be sent, statements are cut at once for this long: a hung
# pgbouncer would otherwise cost each due statement CANCEL_WAIT_S, one after another.
NO_CANCEL_FOR_S = 1.0

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("photostack_deadline", default=None)


class DeadlineExceeded(Exception):
    """The database did not answer within the request's budget (answered 503, Retry-After)."""


def deadline_for(budget_s: float, waited_s: float | None, now: float) -> float:
    """The monotonic time by which a request's database work must be over: `budget_s` (the
    route's read timeout at nginx) from when nginx sent the request, less the margin. A request
    that waited `waited_s` ≥ its budget is a retry nginx sent just now (or one nginx has given up
    on): its budget starts `now`."""
    started = now - waited_s if waited_s is not None and waited_s < budget_s else now
    return started + budget_s - min(MARGIN_S, budget_s / 4)


@contextmanager
def request_deadline(at: float | None) -> Iterator[None]:
    """Database calls within the block end by monotonic time `at` (None: no deadline)."""
    token = _deadline.set(at)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left of this request's budget (None: no deadline; may be ≤ 0)."""
    at = _deadline.get()
    return None if at is None else at - time.monotonic()


def pool_wait(longest_s: float) -> float:
    """How long to wait for a pooled connection: `longest_s`, or less if the deadline is nearer;
    DeadlineExceeded if it has passed (nothing was sent)."""
    left = remaining()
    if left is None:
        return longest_s
    if left <= 0:
        raise DeadlineExceeded("the request's budget was spent before the database was asked; try again")
    return min(longest_s, left)


@dataclass(eq=False)
class Watch:
    """A connection in use by a request with a deadline (`at`: when the watchdog acts next);
    `fired` once the watchdog acted on it (cancelled its statement or cut it)."""

    conn: psycopg.Connection
    at: float
    fired: bool = False


class Watchdog:
    """One thread per process that cancels the statements still running at their request's
    deadline, and cuts their connections if that does not end them. A process has at most one
    watched connection per request thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active: set[Watch] = set()
        self._wake_at: float | None = None  # when the thread wakes next (None: when notified)
        self._cancel_from = 0.0  # cancels are tried again from this monotonic time on
        # Started on first use: after gunicorn forked its workers (threads do not survive a fork).
        self._thread: threading.Thread | None = None

    def arm(self, conn: psycopg.Connection, at: float) -> Watch:
        """Watch `conn` until `disarm`: at monotonic time `at` its statement is cancelled, and
        its socket shut down CUT_AFTER_S later."""
        watch = Watch(conn, at)
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="db-deadline", daemon=True)
                self._thread.start()
            self._active.add(watch)
            if self._wake_at is None or at < self._wake_at:
                self._cond.notify()
        return watch

    def disarm(self, watch: Watch) -> bool:
        """Stop watching; whether the watchdog acted on the connection (then it must not be
        reused). After this returns the connection is never touched by the watchdog."""
        with self._cond:
            self._active.discard(watch)
            return watch.fired

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                # Under the lock: the request thread cannot return the connection to its pool
                # (and another request take it) while its statement is cancelled or cut.
                for watch in [w for w in self._active if w.at <= now]:
                    if not watch.fired and now >= self._cancel_from:
                        watch.fired = True
                        if _cancel(watch.conn):
                            watch.at = now + CUT_AFTER_S
                            continue
                        self._cancel_from = time.monotonic() + NO_CANCEL_FOR_S
                    watch.fired = True
                    self._active.discard(watch)
                    _shut_down(watch.conn)
                self._wake_at = min((w.at for w in self._active), default=None)
                # Disarmed watches are not waited for: the thread wakes at most once per budget
                # for one that finished in time, and then sleeps until the next one's deadline.
                self._cond.wait(None if self._wake_at is None else max(0.0, self._wake_at - time.monotonic()))


def _cancel(conn: psycopg.Connection) -> bool:
    """Ask the server (through pgbouncer) to cancel the connection's statement; whether the
    request went out. psycopg documents cancelling from another thread than the one running
    the statement."""
    try:
        conn.cancel_safe(timeout=CANCEL_WAIT_S)
    except (OSError, psycopg.Error):
        return False  # not sent in time (a hung pgbouncer), or the connection is gone
    return True


def _shut_down(conn: psycopg.Connection) -> None:
    """Shut a connection's socket down both ways: libpq's pending read or write ends with an
    error at once. Through a duplicate descriptor: the connection's own stays its owner's."""
    try:
        fd = conn.pgconn.socket
        with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):
        pass  # already closed or broken: the statement's wait is over anyway


_watchdog = Watchdog()


@contextmanager
def watched(conn: psycopg.Connection) -> Iterator[Watch | None]:
    """Hold `conn` under this request's deadline while the block uses it (None: no deadline).
    A connection the watchdog acted on is closed on the way out, so its pool replaces it."""
    at = _deadline.get()
    if at is None:
        yield None
        return
    watch = _watchdog.arm(conn, at)
    try:
        yield watch
    finally:
        if _watchdog.disarm(watch):
            conn.close()


def cut(watch: Watch | None) -> bool:
    """Whether the watchdog acted on this connection (an error on it is then the deadline's)."""
    return watch is not None and _watchdog.disarm(watch)
