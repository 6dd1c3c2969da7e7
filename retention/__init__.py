"""Qingli's site package and its retention domain.

The root holds the site (settings, urls, wsgi/asgi, apps, the admin), the errors,
policies and accepted dates (``dates``) every package shares, and the periodic schedule
(``cron``). Each sub-package owns one concern and says in its docstring what it may
import; ``docs/architecture.md`` draws the layers, and ``tests/test_architecture.py``
keeps them.
"""
