"""Periodic jobs, for exactly one `manage.py rqcron retention.cron` process (with Redis)
or the in-process worker of the zero-setup default.

Each job works out from the database what is due, so a missed or doubled run is harmless.
Cron fields use the process's local time zone (set TZ, e.g. Asia/Shanghai).
"""

from rq import cron

from retention.exports.service import expire_exports, requeue_stalled_exports
from retention.governance.decisions import do_expire_stale_requests
from retention.reports.audit_log_exports import (
    expire_audit_exports,
    requeue_stalled_audit_exports,
)
from retention.reports.verification_runs import (
    record_chain_digests,
    requeue_stalled_verifications,
    verify_audit_chain,
)
from retention.rules.runs import check_rule_health, run_due_rules
from retention.wipes.runner import purge_recycle_bin
from retention.wipes.watchdog import watch_executions

cron.register(watch_executions, queue_name="maintenance", cron="* * * * *")
cron.register(purge_recycle_bin, queue_name="maintenance", cron="7 * * * *")
cron.register(do_expire_stale_requests, queue_name="maintenance", cron="*/15 * * * *")
cron.register(run_due_rules, queue_name="maintenance", cron="15 2 * * *")
cron.register(check_rule_health, queue_name="maintenance", cron="0 9 * * *")
cron.register(record_chain_digests, queue_name="maintenance", cron="5 0 * * *")
cron.register(verify_audit_chain, queue_name="maintenance", cron="30 3 * * *")
cron.register(requeue_stalled_exports, queue_name="maintenance", cron="*/5 * * * *")
cron.register(expire_exports, queue_name="maintenance", cron="45 3 * * *")
cron.register(requeue_stalled_verifications, queue_name="maintenance", cron="*/5 * * * *")
cron.register(requeue_stalled_audit_exports, queue_name="maintenance", cron="*/5 * * * *")
cron.register(expire_audit_exports, queue_name="maintenance", cron="50 3 * * *")
