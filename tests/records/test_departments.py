from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from retention.models import Department

pytestmark = pytest.mark.django_db


def test_paths_and_depths_follow_the_tree(org):
    assert org.company.depth == 0
    assert org.hangzhou.depth == 2
    assert org.warehouse.path == f"{org.hangzhou.path}{org.warehouse.pk}/"


def test_a_subtree_is_one_query_at_any_depth(org):
    deepest = org.warehouse
    for i in range(12):
        deepest = Department.objects.create(name=f"level {i}", parent=deepest)
    with CaptureQueriesContext(connection) as queries:
        names = set(org.east.subtree().values_list("name", flat=True))
    assert len(queries) == 1
    assert {"East region", "Hangzhou store", "Hangzhou warehouse", "level 11"} <= names
    assert "Shenzhen store" not in names


def test_moving_a_department_moves_its_subtree(org):
    org.hangzhou.parent = org.south
    org.hangzhou.save()
    org.warehouse.refresh_from_db()
    assert org.warehouse.path == f"{org.south.path}{org.hangzhou.pk}/{org.warehouse.pk}/"
    assert org.warehouse.depth == 3
    assert org.south.contains(org.warehouse)
    assert not org.east.contains(org.warehouse)


def test_a_department_cannot_move_under_its_own_subtree(org):
    from django.core.exceptions import ValidationError

    org.east.parent = org.warehouse
    with pytest.raises(ValidationError):
        org.east.full_clean()
    with pytest.raises(ValueError):
        org.east.save()
