"""Errors the deletion services raise beyond Django's own."""


class Conflict(Exception):
    """The object is not in a state that allows this transition (HTTP 409)."""
