"""The OpenAPI schema's AutoSchema: every operation documents the errors it can answer and who may call it.

drf-spectacular documents the success answer of each view; :class:`PlatformAutoSchema`
(``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]``) adds, from what the view is rather than per view:

- 400 (a body or query parameters), 413 and 415 (a body), 414 (parameters in the URL), with the
  bodies DRF, ``backbone.errors`` and ``config.http_errors`` answer (``Error``, ``FieldErrors``);
- 401 and 403 (any operation that needs credentials), 404 (a path parameter, a paginated list's
  ``page``, a relation in the body), 409 (a unique field in the body), 429 with ``Retry-After``;
- statuses a view names in ``@extend_schema(responses=...)`` (409 on a state conflict) get the body too;
- request text as strict as DRF reads it (no NUL, not blank), decimals as the exact text
  :class:`catalog.serializers.JSONTypesMixin` takes, the item limits of nested lists.

Operations only staff may call do not list the storefront key scheme, and every operation's
description names the access it needs (``ACCESS``).
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent, force_instance, get_lib_doc_excludes
from rest_framework import permissions, serializers
from rest_framework.validators import UniqueTogetherValidator, UniqueValidator

from catalog.auth import PublicAccess, ServerAccess
from catalog.serializers import JSONTypesMixin, ReferenceStatusMixin, decimal_pattern

# What DRF's CharField (and Django's forms.CharField) refuse in text, as a JSON Schema pattern: NUL
# anywhere, and a value that is only whitespace (Python's str.strip() set, ECMA's \s differs).
WHITESPACE = r"\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NO_NUL = r"^[^\u0000]*$"
NON_BLANK = rf"^[^\u0000]*[^\u0000{WHITESPACE}][^\u0000]*$"
TEXT_SCHEMA = {"type": "string", "pattern": NON_BLANK}  # a non-blank text query parameter

STOREFRONT_SCHEME = "storefrontKey"
ACCESS = {
    PublicAccess: "any storefront key (public or server scope) or staff",
    ServerAccess: "a server-scope storefront key or staff",
    permissions.AllowAny: "anyone, no credentials",
}
STAFF_ONLY = "staff only (session or basic auth); storefront keys are refused"

ERROR = {
    "type": "object",
    "description": "An error with a message; ``request_id`` (errors answered outside DRF) names the log lines.",
    "properties": {"detail": {"type": "string"}, "request_id": {"type": "string", "nullable": True}},
    "required": ["detail"],
}
FIELD_ERRORS = {
    "type": "object",
    "description": "Messages per input field (``non_field_errors``: the input as a whole); a list's items "
    "and a nested object's fields are keyed by position or name, with messages of the same shape.",
    "additionalProperties": {
        "anyOf": [{"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "object"}]}}, {"type": "object"}]
    },
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_OR_FIELDS = {"anyOf": [ERROR_REF, {"$ref": "#/components/schemas/FieldErrors"}]}
RETRY_AFTER = {
    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before the next request."}
}
# status -> (default description, body schema)
ERRORS = {
    "400": ("Invalid input (per field), or a body that cannot be parsed (detail).", ERROR_OR_FIELDS),
    "401": ("No credentials, or an unknown or inactive key.", ERROR_REF),
    "403": ("The credentials do not allow this operation.", ERROR_REF),
    "404": ("Not found (detail), or an input naming something that does not exist (per field).", ERROR_OR_FIELDS),
    "409": ("The current state refuses the request (detail or per field).", ERROR_OR_FIELDS),
    "413": ("Request body over the upload limit.", ERROR_REF),
    "414": ("Request line over the web server's limit (4 KB: gunicorn's HTML page).", None),
    "415": ("Unsupported request media type.", ERROR_REF),
    "429": ("Too many requests (rate limit or failed logins); retry after Retry-After seconds.", ERROR_REF),
}


class PlatformAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema with the project's error answers, security and access notes."""

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        """The operation as drf-spectacular builds it, plus the error statuses it can answer."""
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        for name, schema in (("Error", ERROR), ("FieldErrors", FIELD_ERRORS)):
            registry.register_on_missing(
                ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema)
            )
        responses = operation["responses"]
        for status in self.error_statuses(operation) | {s for s in responses if s in ERRORS}:
            description, schema = ERRORS[status]
            response = responses.setdefault(status, {})
            response["description"] = response.get("description") or description
            if schema:
                response.setdefault("content", {"application/json": {"schema": schema}})
            if status == "429":
                response.setdefault("headers", RETRY_AFTER)
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def error_statuses(self, operation: dict) -> set[str]:
        """The error statuses this operation can answer, from its body, parameters, credentials and throttles."""
        statuses = set()
        locations = {parameter["in"] for parameter in operation.get("parameters", [])}
        if "requestBody" in operation:
            statuses |= {"400", "413", "415"} | reference_statuses(force_instance(self.get_request_serializer()))
        if "query" in locations:
            statuses.add("400")
        if locations:
            statuses.add("414")
        if "path" in locations or (self._is_list_view() and self._get_paginator()):
            statuses.add("404")
        if not self._allows_anyone():
            statuses |= {"401", "403"}
        if self.view.get_throttles():
            statuses.add("429")
        return statuses

    def get_serializer_name(self, serializer, direction):
        """The serializer's name; ``EventBatchRequestSerializer`` becomes ``EventBatchRequest``, not
        ``EventBatchRequestRequest`` (``COMPONENT_SPLIT_REQUEST`` appends ``Request``)."""
        name = super().get_serializer_name(serializer, direction)
        if direction == "request" and name.endswith("RequestSerializer"):
            return name.removesuffix("RequestSerializer") + "Serializer"
        return name

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        """drf-spectacular's field schema, plus the item limits of a nested ``many=True`` serializer."""
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if isinstance(field, serializers.ListSerializer) and schema:
            minimum = max(field.min_length or 0, 0 if field.allow_empty else 1)
            if minimum:
                schema["minItems"] = minimum
            if field.max_length is not None:
                schema["maxItems"] = field.max_length
        return schema

    def _map_basic_serializer(self, serializer, direction):
        """drf-spectacular's object schema, plus (requests) the text its CharFields refuse and the exact
        decimal text, and ``additionalProperties: false`` for a serializer with ``additional_properties = False``."""
        schema = super()._map_basic_serializer(serializer, direction)
        if getattr(serializer, "additional_properties", True) is False:
            schema["additionalProperties"] = False
        if direction == "request":
            for name, field in serializer.fields.items():
                prop = schema.get("properties", {}).get(name)
                if isinstance(field, serializers.ListField):
                    field, prop = field.child, (prop or {}).get("items")
                _document_text(field, prop)
                if isinstance(field, serializers.DecimalField) and prop and "pattern" in prop:
                    prop["pattern"] = decimal_pattern(field)  # the strict text JSONTypesMixin checks
        return schema

    def get_auth(self):
        """drf-spectacular's security list, without the storefront key where only staff may call."""
        auths = super().get_auth()
        if self._access() is None:
            auths = [auth for auth in auths if STOREFRONT_SCHEME not in auth]
        return auths

    def get_description(self):
        """The view's docstring, then the access the operation needs."""
        access = self._access()
        note = f"Access: {ACCESS[access] if access else STAFF_ONLY}."
        description = super().get_description()
        return f"{description}\n\n{note}" if description else note

    def _access(self) -> type | None:
        """The permission class that lets more than staff in (None: staff only)."""
        classes = {type(p) for p in self.view.get_permissions()}
        return next((access for access in ACCESS if access in classes), None)

    def _allows_anyone(self) -> bool:
        """Whether the operation needs no credentials at all (the health check)."""
        return self._access() is permissions.AllowAny


def reference_statuses(serializer) -> set[str]:
    """The 404 and 409 of a :class:`ReferenceStatusMixin` serializer: a relation to a missing row, a unique
    value another row holds."""
    if not isinstance(serializer, ReferenceStatusMixin):
        return set()
    fields = [field for field in serializer.fields.values() if not field.read_only]
    statuses = {"404"} if any(isinstance(field, serializers.RelatedField) for field in fields) else set()
    validators = [v for field in fields for v in field.validators] + list(serializer.validators)
    if any(isinstance(v, UniqueValidator | UniqueTogetherValidator) for v in validators):
        statuses.add("409")
    return statuses


def lib_doc_excludes() -> list[type]:
    """drf-spectacular's classes whose docstrings never describe a component, and the request mixins
    (a serializer without a docstring of its own has no description, not the mixin's)."""
    return [*get_lib_doc_excludes(), JSONTypesMixin, ReferenceStatusMixin]


def _document_text(field, schema: dict | None) -> None:
    """Add to the schema of a request CharField documented as any string (no pattern, format or choices)
    the pattern of what it refuses: NUL, and whitespace alone where it must not be blank."""
    if (
        isinstance(field, serializers.CharField)
        and schema
        and schema.get("type") == "string"
        and not {"pattern", "format", "enum", "oneOf"} & set(schema)
    ):
        schema["pattern"] = NON_BLANK if field.trim_whitespace and not field.allow_blank else NO_NUL
