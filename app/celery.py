"""The Celery app: `celery -A app.celery:celery_app worker -Q thumbnails,feed`.

Reliability settings: a task is acknowledged only after it ran (acks_late) and requeued if its
worker process dies (task_reject_on_worker_lost); each worker process reserves one message at a
time (prefetch 1), so a slow thumbnail never holds others hostage; queues are durable and
messages persistent, so a broker restart keeps them; publishes wait for the broker's confirm
(confirm_publish), so a task the app reported as queued was taken by the broker, even when it
restarts a moment later. Tasks must be idempotent (they are).
"""

from __future__ import annotations

import os

from celery import Celery, signals
from kombu import Exchange, Queue

from app.config import app_config

THUMBNAIL_QUEUE = "thumbnails"
FEED_QUEUE = "feed"

celery_app = Celery("photostack", broker=app_config().broker_url, include=["app.tasks"])
celery_app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # Each queue on its own direct exchange and key: a Queue without them would be bound to the
    # default exchange/key, i.e. both queues to "feed"/"feed", and every task would run twice.
    task_queues=tuple(
        Queue(name, Exchange(name, type="direct", durable=True), routing_key=name, durable=True)
        for name in (THUMBNAIL_QUEUE, FEED_QUEUE)
    ),
    task_default_exchange=FEED_QUEUE,
    task_default_routing_key=FEED_QUEUE,
    task_default_queue=FEED_QUEUE,
    task_routes={
        "photostack.make_thumbnail": {"queue": THUMBNAIL_QUEUE},
        "photostack.fanout_photo": {"queue": FEED_QUEUE},
    },
    task_default_delivery_mode="persistent",
    broker_transport_options={"confirm_publish": True},
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    # A post waits for its publish (app/posting.py): bound what an unreachable or hung broker
    # costs it. Connecting (TCP and the AMQP handshake) 1 s, one retry on a new connection;
    # the confirm wait is bounded per publish (PUBLISH_CONFIRM_TIMEOUT_S, app/tasks.py).
    broker_connection_timeout=1.0,
    task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1},
    worker_hijack_root_logger=False,
)


# Pool processes run below the web processes' priority: on a shared box (the one-box; an AWS
# host running app and worker roles together) request latency matters, thumbnails can trail by
# a moment. Under sustained saturation the queue grows (the messages_ready alert says so).
WORKER_NICE = 10


@signals.worker_process_init.connect
def _lower_priority(**_kwargs) -> None:
    """Renice each pool process (not the consumer, which must keep acking and heartbeating)."""
    os.nice(WORKER_NICE)


@signals.celeryd_init.connect
def _init_sentry(**_kwargs) -> None:
    """Sentry for the worker (before the pool forks, as sentry-sdk's Celery docs ask)."""
    from sentry_sdk.integrations.celery import CeleryIntegration

    from app.sentry import init_app_sentry

    init_app_sentry(app_config(), "worker", [CeleryIntegration()])
