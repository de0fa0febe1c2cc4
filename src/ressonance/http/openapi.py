"""The OpenAPI 3.1 document of the management API (``GET /api/v1/openapi.json``), built from
the same field list the API checks (:data:`~ressonance.apps.validation.SETTINGS_FIELDS`), so
the two cannot disagree on what an app holds."""

from __future__ import annotations

import functools
from typing import Any

from ressonance import __version__
from ressonance.apps.validation import MAX_WEBHOOKS, SETTINGS_FIELDS
from ressonance.models import WEBHOOK_EVENTS

_TYPES = {"bool": "boolean", "int": "integer", "str": "string"}


WEBHOOK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["url", "event_types"],
    "properties": {
        "url": {"type": "string", "format": "uri", "pattern": "^https?://"},
        "event_types": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "enum": list(WEBHOOK_EVENTS)},
        },
        "filter": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "channel_name_starts_with": {"type": "string"},
                "channel_name_ends_with": {"type": "string"},
            },
        },
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _field_schema(kind: Any) -> dict[str, Any]:
    name = getattr(kind, "__name__", str(kind))
    if name == "tuple[Webhook, ...]":
        return {"type": "array", "maxItems": MAX_WEBHOOKS, "items": WEBHOOK_SCHEMA}
    if name in _TYPES:
        schema: dict[str, Any] = {"type": _TYPES[name]}
        if name == "int":
            schema["minimum"] = 0
        return schema
    return {"type": "array", "items": {"type": "string"}}  # allowed_origins


def _settings() -> dict[str, Any]:
    return {name: _field_schema(f.type) for name, f in SETTINGS_FIELDS.items()}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _app_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/App"}}},
    }


_ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
}
_COMMON = {
    "401": _error("No or a wrong admin token"),
    "503": _error("The app store cannot be reached"),
}
_QUEUE_DOWN = _error("The webhook queue cannot be reached")
DEAD_LETTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A webhook POST given up after its retries (kept 7 days; docs/webhooks.md)",
    "properties": {
        "id": {"type": "string", "description": "the webhook-id it was posted with"},
        "app_id": {"type": "string"},
        "url": {"type": "string"},
        "events": {"type": "array", "items": {"type": "string"}},
        "headers": {
            "type": "array",
            "items": {"type": "string"},
            "description": "the names of the webhook's own headers (never their values)",
        },
        "attempts": {"type": "integer"},
        "last_error": {"type": "string", "description": "the last attempt's status or error"},
        "created_at": {"type": "number", "description": "Unix time, seconds"},
        "dead_at": {"type": "number", "description": "Unix time, seconds"},
    },
    "required": [
        "id",
        "app_id",
        "url",
        "events",
        "headers",
        "attempts",
        "last_error",
        "created_at",
        "dead_at",
    ],
}


def _dead_letter_paths() -> dict[str, Any]:
    letters = {
        "type": "object",
        "properties": {
            "dead_letters": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/DeadLetter"},
                "description": "newest first",
            }
        },
        "required": ["dead_letters"],
    }
    return {
        "/api/v1/dead-letters": {
            "get": {
                "summary": "Webhook POSTs given up, newest first (of one app, or of all)",
                "parameters": [
                    {"name": "app_id", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        "description": "default 100",
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The dead letters",
                        "content": {"application/json": {"schema": letters}},
                    },
                    "400": _error("A query parameter is refused: see field"),
                    "401": _COMMON["401"],
                    "503": _QUEUE_DOWN,
                },
            }
        },
        "/api/v1/dead-letters/{id}/replay": {
            "post": {
                "summary": "Queue a dead letter's POST again (same webhook-id, attempts reset)",
                "parameters": [{**_ID_PARAM, "schema": {"type": "string"}}],
                "responses": {
                    "200": {
                        "description": "Queued again; no longer a dead letter",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"replayed": {"type": "string"}},
                                    "required": ["replayed"],
                                }
                            }
                        },
                    },
                    "404": _error("No dead letter has this id"),
                    "401": _COMMON["401"],
                    "503": _QUEUE_DOWN,
                },
            }
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    settings = _settings()
    key_schema = {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "secret": {"type": "string"},
            "created_at": {"type": "number", "description": "Unix time, seconds"},
            "expires_at": {
                "type": ["number", "null"],
                "description": "end of the grace period after a rotation; null: no end",
            },
        },
        "required": ["key", "secret", "created_at", "expires_at"],
    }
    app_schema = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "key": {"type": "string", "description": "the newest key"},
            "secret": {"type": "string", "description": "the newest key's secret"},
            "enabled": {"type": "boolean"},
            **settings,
            "keys": {"type": "array", "items": key_schema, "description": "newest first"},
            "created_at": {"type": "number"},
            "updated_at": {"type": "number"},
            "source": {"type": "string", "enum": ["store", "config", "development"]},
            "read_only": {"type": "boolean"},
        },
        "required": ["id", "name", "key", "secret", "enabled", "keys", "source", "read_only"],
    }
    create_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "id": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
            "key": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,128}$"},
            "secret": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,256}$"},
            "enabled": {"type": "boolean"},
            **settings,
        },
    }
    update_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "enabled": {"type": "boolean"},
            **settings,
        },
    }
    json_body = {"required": True, "content": {"application/json": {"schema": {}}}}

    def body(ref: str) -> dict[str, Any]:
        return {**json_body, "content": {"application/json": {"schema": {"$ref": ref}}}}

    def action(summary: str, **extra: Any) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "parameters": [_ID_PARAM],
                **extra,
                "responses": {
                    "200": _app_response("The app after the change"),
                    "403": _error("A configured app: read-only"),
                    "404": _error("No app has this id"),
                    **_COMMON,
                },
            }
        }

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Ressonance management API",
            "version": __version__,
            "description": "Apps of the app store (docs/apps.md) and webhook dead letters "
            "(docs/webhooks.md), on the admin listener.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/apps": {
                "get": {
                    "summary": "Every app served: the store's and the configured ones",
                    "responses": {
                        "200": {
                            "description": "The apps",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "apps": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/App"},
                                            }
                                        },
                                    }
                                }
                            },
                        },
                        "401": _COMMON["401"],
                    },
                },
                "post": {
                    "summary": "Create an app (id, key and secret are generated when not given)",
                    "requestBody": body("#/components/schemas/NewApp"),
                    "responses": {
                        "201": _app_response("The new app, with its secret"),
                        "400": _error("A field is refused: see field"),
                        "409": _error("The id or the key is taken"),
                        **_COMMON,
                    },
                },
            },
            "/api/v1/apps/{id}": {
                "parameters": [_ID_PARAM],
                "get": {
                    "summary": "One app",
                    "responses": {
                        "200": _app_response("The app"),
                        "404": _error("No app has this id"),
                        "401": _COMMON["401"],
                    },
                },
                "patch": {
                    "summary": "Change the name, the enabled flag, limits or flags",
                    "requestBody": body("#/components/schemas/AppChanges"),
                    "responses": {
                        "200": _app_response("The app after the change"),
                        "400": _error("A field is refused: see field"),
                        "403": _error("A configured app: read-only"),
                        "404": _error("No app has this id"),
                        **_COMMON,
                    },
                },
                "delete": {
                    "summary": "Delete an app: its connections close with 4003",
                    "responses": {
                        "204": {"description": "Deleted"},
                        "403": _error("A configured app: read-only"),
                        "404": _error("No app has this id"),
                        **_COMMON,
                    },
                },
            },
            "/api/v1/apps/{id}/rotate-secret": action(
                "A new key and secret; the old pair stays valid for grace (default 24h)",
                requestBody={
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "grace": {
                                        "oneOf": [
                                            {"type": "number", "minimum": 0},
                                            {"type": "string", "pattern": "^[0-9.]+[smhd]?$"},
                                        ],
                                        "description": "seconds, or 90s, 15m, 24h, 7d",
                                    }
                                },
                            }
                        }
                    },
                },
            ),
            "/api/v1/apps/{id}/enable": action("Enable an app"),
            "/api/v1/apps/{id}/disable": action("Disable an app: its connections close (4003)"),
            **_dead_letter_paths(),
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the admin token (RESSONANCE_ADMIN_TOKEN)",
                }
            },
            "schemas": {
                "App": app_schema,
                "NewApp": create_schema,
                "AppChanges": update_schema,
                "DeadLetter": DEAD_LETTER_SCHEMA,
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {"type": "string"},
                        "code": {"type": "integer", "description": "the HTTP status"},
                        "field": {"type": "string", "description": "the field refused (400)"},
                    },
                    "required": ["error", "code"],
                },
            },
        },
    }
