"""runserver, plus the in-process queue worker of the zero-setup default."""

from django.conf import settings
from django.core.management.commands.runserver import Command as RunserverCommand

from retention.jobs.queue import start_in_process_worker

# With Redis, nothing runs a job until these run too (docs/configuration.md).
REDIS_PROCESSES = (
    "Jobs go to Redis: run `manage.py rqworker default wipes maintenance --with-scheduler` "
    "(one or more) and exactly one `TZ=Asia/Shanghai manage.py rqcron retention.cron`."
)


class Command(RunserverCommand):
    help = "Start the development server and, without REDIS_URL, an in-process RQ worker."

    def inner_run(self, *args, **options):
        # inner_run executes only in the serving process, never in the autoreloader's parent.
        if settings.QINGLI_IN_PROCESS_QUEUE:
            start_in_process_worker()
            self.stdout.write("In-process queue worker started (no REDIS_URL set).")
        else:
            self.stdout.write(REDIS_PROCESSES)
        super().inner_run(*args, **options)
