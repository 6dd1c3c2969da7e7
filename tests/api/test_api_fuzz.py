"""Schemathesis against our own OpenAPI schema (``/api/schema/``), once per role.

Every operation of the schema gets generated requests, schema-valid and schema-violating
(negative) alike, sent with the token of a staff member, a manager, a security officer,
an auditor and an admin, into a populated company (``tests/world.py``). Every response
goes through schemathesis's checks: no 5xx, a documented status code, content type and
headers, a body that matches the documented schema, schema-violating input refused with
a 4xx. The ids in paths are the world's own half of the time, so requests reach real
objects as well as missing ones.

CI runs it bounded (``QINGLI_FUZZ_EXAMPLES``, default 3 generated examples per operation
and mode, besides schemathesis's boundary cases); a longer
run is ``QINGLI_FUZZ_EXAMPLES=200 ./qingli test -m fuzz`` (docs/security.md). Requests
run inside the test's transaction, and nothing is enqueued (on-commit callbacks never
fire), so no wipe or export job ever runs against shared state.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from tests.conftest import api_token_for
from tests.world import build_world

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db]

EXAMPLES = int(os.environ.get("QINGLI_FUZZ_EXAMPLES", "5"))
# schemathesis's boundary cases (each required field missing, each type wrong, each bound
# crossed, ...): some two thousand cases whatever EXAMPLES is, so the long run only.
COVERAGE = bool(os.environ.get("QINGLI_FUZZ_COVERAGE"))
ROLES = ("staff", "manager", "security", "auditor", "admin")

# What the run did, for the summary line (see conftest.pytest_terminal_summary).
FIGURES: Counter = Counter()
OPERATIONS: set[str] = set()

# Ids of the world's objects, by path parameter name; set by the fixture of each run.
KNOWN_IDS: dict[str, list[int]] = {}


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    """Half of the time, a generated id is replaced by one of an object that exists."""
    names = [n for n, v in (path_parameters or {}).items() if n in KNOWN_IDS and type(v) is int]
    if not names:
        return st.just(path_parameters)
    known = st.fixed_dictionaries({n: st.sampled_from(KNOWN_IDS[n]) for n in names})
    return st.one_of(st.just(path_parameters), known.map(lambda ids: {**path_parameters, **ids}))


APP = WSGIHandler()
# Schema-valid requests may still be refused with 400 where the rule is not one a schema
# can state: ids that must exist and be visible to the caller ("a department you manage"),
# fields that depend on each other ("a personal deletion names one conversation"), names
# that must be known. Every other check runs as schemathesis ships it.
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "429", "5xx"]
            }
        }
    }
)
# Our own schema, as /api/schema/ serves it (it reads no database).
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", APP, config=CONFIG)


@pytest.fixture(autouse=True)
def _keep_the_test_transaction():
    """Django's handler closes "stale" connections around each request, which inside the
    test's transaction would poison it; Django's test client turns that off too."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(org, cast, chats):
    world = build_world(org, cast, chats)
    KNOWN_IDS.update(
        conversation_id=[c.pk for c in world.chats.values()],
        request_id=[
            r.pk
            for r in (
                world.pending,
                world.south_pending,
                world.personal,
                world.binned,
                world.server,
            )
        ],
        export_id=[world.export.pk, world.chat_export.pk],
        hold_id=[world.hold.pk],
        rule_id=[world.rule.pk],
        review_id=[world.review.pk],
        token_id=[world.token.pk],
    )
    yield world
    KNOWN_IDS.clear()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("QINGLI_FUZZ_RANDOM"),
    phases=[Phase.explicit, Phase.generate] if COVERAGE else [Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_api_survives_generated_requests(case, world):
    OPERATIONS.add(case.operation.label)
    FIGURES["examples"] += 1
    for role in ROLES:
        token = api_token_for(getattr(world.cast, role))
        FIGURES["requests"] += 1
        case.call_and_validate(headers={"Authorization": f"Token {token}"})
