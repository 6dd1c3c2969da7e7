"""Who may do what: the authorisation predicates every page, API view, inbox and service
asks ("may this member file / decide / cancel / restore / see this?"), the second factor,
API tokens, and sign-in (lockouts, the audit of sign-ins and sign-outs).

May import: ``retention.models``, ``retention.errors``, ``retention.policies``,
``retention.records`` and ``audit``. Nothing here deletes anything.
"""
