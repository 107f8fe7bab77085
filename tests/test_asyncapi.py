"""docs/asyncapi.yaml and the message classes agree."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mediastreams.diagnostics import APP_SCHEMAS, TWILIO_SCHEMAS
from mediastreams.messages import UnknownMessage, parse, serialize

DOC = yaml.safe_load((Path(__file__).parent.parent / "docs" / "asyncapi.yaml").read_text())
MESSAGES = DOC["components"]["messages"]


def resolve(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node and len(node) <= 2:
        target: Any = DOC
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def sender_of(key: str) -> str:
    ops = DOC["operations"]
    sent = [ref["$ref"].rsplit("/", 1)[-1] for ref in ops["sendToTwilio"]["messages"]]
    return "app" if key in sent else "twilio"


def required_tree(schema: dict[str, Any]) -> dict[str, Any]:
    """The required fields, recursively, as {name: subtree-or-None}."""
    tree: dict[str, Any] = {}
    for name in schema.get("required", []):
        prop = resolve(schema["properties"][name])
        tree[name] = (
            required_tree(prop) if prop.get("type") == "object" and "required" in prop else None
        )
    return tree


def schema_tree(schema: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, kind in schema.items():
        if name.endswith("?"):
            continue
        tree[name] = schema_tree(kind) if isinstance(kind, dict) else None
    return tree


@pytest.mark.parametrize("key", list(MESSAGES))
def test_examples_parse_and_round_trip(key: str) -> None:
    sender = sender_of(key)
    for example in MESSAGES[key]["examples"]:
        text = json.dumps(example["payload"], separators=(",", ":"))
        message = parse(text, sender=sender)  # type: ignore[arg-type]
        assert not isinstance(message, UnknownMessage)
        assert json.loads(serialize(message)) == example["payload"]


@pytest.mark.parametrize("key", list(MESSAGES))
def test_required_fields_match_the_message_schemas(key: str) -> None:
    message = MESSAGES[key]
    event = message["name"]
    schemas = APP_SCHEMAS if sender_of(key) == "app" else TWILIO_SCHEMAS
    expected = {"event": None, **schema_tree(schemas[event])}
    assert required_tree(message["payload"]) == expected


def test_every_event_is_documented() -> None:
    documented = {(sender_of(k), m["name"]) for k, m in MESSAGES.items()}
    ours = {("twilio", e) for e in TWILIO_SCHEMAS} | {("app", e) for e in APP_SCHEMAS}
    assert documented == ours


def test_app_messages_forbid_extra_fields() -> None:
    for key, message in MESSAGES.items():
        if sender_of(key) == "app":
            assert message["payload"]["additionalProperties"] is False
