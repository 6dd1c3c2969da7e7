"""The refusals every operation can answer with, added to the OpenAPI schema.

Views document what is particular to them (a 409 when the state forbids it, a 403 with
its reason); the answers that follow from how the API is built are added here, so no
operation's schema can forget them and clients (and the fuzzer) see every status they
may get:

- 401 without a valid token or session, wherever the operation needs one;
- 403 wherever a role or department can refuse (deny by default), and for a session
  sign-in without its CSRF token;
- 404 where a path names an object (missing or outside the caller's view look the same)
  and on lists (a page past the last one);
- 400 where the operation takes parameters or a body, 413 for a body over the bound and
  415 for a body that is not JSON.
"""

from __future__ import annotations

from typing import Any

REFUSAL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
FIELD_ERRORS = {
    "type": "object",
    "additionalProperties": {},
    "description": '{"field": ["message", ...], ...} or {"detail": "message"}',
}
UNSAFE = {"post", "put", "patch", "delete"}


def _refusal(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Refusal"}}},
    }


def _needs_credentials(operation: dict[str, Any]) -> bool:
    security = operation.get("security")
    if not security:
        return False
    return all(requirement for requirement in security)  # {} means anonymous is allowed


def document_refusals(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    result.setdefault("components", {}).setdefault("schemas", {})["Refusal"] = REFUSAL
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            parameters = operation.get("parameters", [])
            has_body = "requestBody" in operation
            if _needs_credentials(operation):
                responses.setdefault("401", _refusal("No valid token or session."))
                responses.setdefault(
                    "403",
                    _refusal(
                        "Your role or department does not allow this"
                        + (
                            " (or a session sign-in sent no CSRF token)."
                            if method in UNSAFE
                            else "."
                        )
                    ),
                )
            if any(p.get("in") == "path" for p in parameters):
                responses.setdefault(
                    "404", _refusal("Missing, or outside the caller's view: the same answer.")
                )
            elif any(p.get("name") == "page" for p in parameters):
                responses.setdefault("404", _refusal("A page past the last one."))
            if has_body or any(p.get("in") in ("query", "header") for p in parameters):
                responses.setdefault(
                    "400",
                    {
                        "description": "Bad input; nothing was changed.",
                        "content": {"application/json": {"schema": FIELD_ERRORS}},
                    },
                )
            if has_body:
                responses.setdefault("413", _refusal("Request body over the bound."))
                responses.setdefault("415", _refusal("The body is not JSON."))
    return result
