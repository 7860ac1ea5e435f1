"""The JSON Schema files under schemas/json/ are generated from the models, and what the
worker writes on its hot path (built without pydantic) has the fields its schema names."""

import importlib.util
import json
from pathlib import Path

from schemas.json_schemas import documents
from stream_app.core.engine import Rec
from stream_app.worker.processing import recommendation_json

ROOT = Path(__file__).resolve().parents[2]
TOPICS = ("events", "items", "recommendations", "model-updates", "events-dlq.headers")


def _script():
    spec = importlib.util.spec_from_file_location("js", ROOT / "scripts" / "json_schemas.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_schema_files_match_the_models():
    assert _script().stale() == [], "run: .venv/bin/python scripts/json_schemas.py"


def test_every_topic_has_a_schema():
    names = set(documents())
    assert {f"topic.{t}" for t in TOPICS} <= names
    for name in names:
        doc = json.loads((ROOT / "schemas" / "json" / f"{name}.schema.json").read_text())
        assert doc["$schema"].endswith("2020-12/schema")


def test_the_hot_path_recommendation_has_exactly_the_schema_fields():
    doc = json.loads(
        recommendation_json("u1", "e1", "v0001", [Rec("i1", 0.5, 0.4, 0.1, 0, ["i0"])], 1.25)
    )
    schema = documents()["topic.recommendations"]
    assert set(doc) == set(schema["properties"]) and set(schema["required"]) <= set(doc)
    item = schema["$defs"]["RecommendedItem"]
    assert set(doc["items"][0]) == set(item["properties"])


def test_event_timestamps_accept_iso_or_epoch_ms_as_the_worker_does():
    ts = documents()["topic.events"]["$defs"]["ClickEvent"]["properties"]["ts"]
    assert [a["type"] for a in ts["anyOf"]] == ["string", "number"]
