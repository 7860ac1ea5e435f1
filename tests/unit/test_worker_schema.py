"""The worker's raw topic schema hands the stream the record's bytes as faust's raw codec
does (no decoding inside faust: bad input is the agent's to dead-letter)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("key", [None, b"", b"user-1", b"\xff\xfe not utf-8"])
@pytest.mark.parametrize("value", [None, b"{}", b"\x00\x01 raw", b'{"user_id": 1}'])
def test_the_raw_schema_hands_over_the_same_bytes_as_fausts_raw_codec(key, value):
    import faust
    from faust.types import TP
    from faust.types.tuples import ConsumerMessage

    from schemas.settings import Settings
    from stream_app.worker.app import RawSchema, create_app, raw_schema

    app = create_app(Settings())
    msg = ConsumerMessage("events", 0, 1, 0.0, 0, [], key, value, None, 1, 1, tp=TP("events", 0))
    plain = faust.Schema(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    ours = raw_schema()
    assert isinstance(ours, RawSchema)
    assert ours.loads_key(app, msg) == plain.loads_key(app, msg)
    assert ours.loads_value(app, msg) == plain.loads_value(app, msg)
    assert ours.loads_key(app, msg) is key and ours.loads_value(app, msg) is value
