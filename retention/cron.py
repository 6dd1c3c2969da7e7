"""Periodic jobs, for exactly one `manage.py rqcron retention.cron` process (with Redis)
or the in-process worker of the zero-setup default.

Each job works out from the database what is due, so a missed or doubled run is harmless.
Cron fields use the process's local time zone (set TZ, e.g. Asia/Shanghai).
"""

from rq import cron

from audit.jobs import record_chain_digests, verify_audit_chain
from retention.jobs import (
    check_retention_rules,
    expire_exports,
    expire_stale_requests,
    purge_recycle_bin,
    requeue_stalled_exports,
    run_retention_rules,
    watch_executions,
)

cron.register(watch_executions, queue_name="maintenance", cron="* * * * *")
cron.register(purge_recycle_bin, queue_name="maintenance", cron="7 * * * *")
cron.register(expire_stale_requests, queue_name="maintenance", cron="*/15 * * * *")
cron.register(run_retention_rules, queue_name="maintenance", cron="15 2 * * *")
cron.register(check_retention_rules, queue_name="maintenance", cron="0 9 * * *")
cron.register(record_chain_digests, queue_name="maintenance", cron="5 0 * * *")
cron.register(verify_audit_chain, queue_name="maintenance", cron="30 3 * * *")
cron.register(requeue_stalled_exports, queue_name="maintenance", cron="*/5 * * * *")
cron.register(expire_exports, queue_name="maintenance", cron="45 3 * * *")
