"""The pieces scripts are made of: a line (a template with its fill-in fields parsed), a
step (who speaks, how likely, which lines) and a topic (a weighted list of steps)."""

from __future__ import annotations

from dataclasses import dataclass
from string import Formatter


@dataclass(frozen=True, slots=True)
class Line:
    """A template, with its field names parsed once (filling skips field-less lines)."""

    text: str
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Step:
    role: str
    probability: float
    lines: tuple[Line, ...]


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    weight: float
    steps: tuple[Step, ...]


def _line(text: str) -> Line:
    fields = tuple(dict.fromkeys(name for _, name, _, _ in Formatter().parse(text) if name))
    return Line(text, fields)


def step(role: str, *texts: str, p: float = 1.0) -> Step:
    return Step(role, p, tuple(_line(t) for t in texts))


def topic(name: str, weight: float, *steps: Step) -> Topic:
    return Topic(name, weight, steps)
