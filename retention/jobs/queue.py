"""The zero-setup queue: an in-memory Redis and a worker thread inside the web process.

With ``REDIS_URL`` set none of this is used: jobs go to real Redis and separate
``manage.py rqworker`` processes run them.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import fakeredis
import redis

logger = logging.getLogger(__name__)

FAKE_SERVER = fakeredis.FakeServer()
_POOL = redis.ConnectionPool(connection_class=fakeredis.FakeRedisConnection, server=FAKE_SERVER)


def in_process_connection_kwargs() -> dict[str, Any]:
    """What django-rq needs to talk to the one in-memory Redis of this process."""
    return {"connection_pool": _POOL}


def in_process_queue_config() -> dict[str, Any]:
    return {
        "HOST": "localhost",
        "PORT": 6379,
        "DB": 0,
        "REDIS_CLIENT_KWARGS": in_process_connection_kwargs(),
        "DEFAULT_TIMEOUT": 3600,
    }


def _make_thread_worker_class():
    from django import db
    from rq.timeouts import TimerDeathPenalty
    from rq.worker import SimpleWorker

    class ThreadWorker(SimpleWorker):
        """Runs jobs in a thread: no signal handlers, timer-based timeouts."""

        death_penalty_class = TimerDeathPenalty

        def _install_signal_handlers(self) -> None:  # signals work only in the main thread
            pass

        def execute_job(self, job, queue):
            db.close_old_connections()
            try:
                return super().execute_job(job, queue)
            finally:
                db.close_old_connections()

    return ThreadWorker


class InProcessWorker:
    """A daemon thread that works the queues and enqueues due scheduled jobs."""

    def __init__(self, queue_names: tuple[str, ...], *, with_cron: bool = True) -> None:
        self._stop = threading.Event()
        self._queue_names = queue_names
        self._with_cron = with_cron
        self.thread = threading.Thread(target=self._run, name="qingli-worker", daemon=True)

    def _run(self) -> None:
        import django_rq
        from django import db

        queues = [django_rq.get_queue(name) for name in self._queue_names]
        worker = _make_thread_worker_class()(queues, connection=queues[0].connection)
        cron_scheduler = _cron_scheduler(queues[0].connection) if self._with_cron else None
        while not self._stop.is_set():
            try:
                if cron_scheduler is not None:
                    cron_scheduler.enqueue_jobs()
                _enqueue_due_scheduled_jobs(queues)
                worker.work(burst=True, logging_level="WARNING")
            except Exception:  # keep the demo's queue alive whatever one job did
                logger.exception("in-process worker loop failed")
            self._stop.wait(1)
        db.connections.close_all()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self.thread.join(timeout)


def start_in_process_worker(
    queue_names: tuple[str, ...] | None = None, *, with_cron: bool = True
) -> InProcessWorker:
    from django.conf import settings

    worker = InProcessWorker(queue_names or settings.QUEUE_NAMES, with_cron=with_cron)
    worker.thread.start()
    return worker


def _cron_scheduler(connection):
    """RQ's own cron scheduler, ticked from the worker thread instead of its own process."""
    from rq.cron import CronScheduler

    scheduler = CronScheduler(connection=connection, logging_level="WARNING")
    scheduler.load_config_from_file("retention.cron")
    return scheduler


def _enqueue_due_scheduled_jobs(queues: list) -> None:
    """The in-process stand-in for RQ's scheduler process (which would fork away from
    the in-memory store): move jobs whose time has come from each scheduled registry."""
    for queue in queues:
        registry = queue.scheduled_job_registry
        for job_id in registry.get_jobs_to_schedule(int(time.time())):
            job = queue.fetch_job(job_id)
            registry.remove(job_id)
            if job is not None:
                queue.enqueue_job(job)
