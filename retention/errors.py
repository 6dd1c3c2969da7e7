"""Errors the services raise beyond Django's own; the API and the pages map each to
one answer (409 for ``Conflict``)."""


class Conflict(Exception):
    """The object is not in a state that allows this transition (HTTP 409)."""
