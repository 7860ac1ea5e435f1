"""Write ``stream_app/serving/graphs/retrieve.onnx``: exact top-k retrieval by dot product,
the graph ``stream_app.serving.device_retrieval.DeviceRetriever`` runs with the item matrix
resident on the session's device.

    scores = queries [Q, d] . items [N, d]^T + alive_bias [N]    (one Gemm, transB=1)
    top_scores [Q, k], rows [Q, k] int64 = TopK(scores, k)       (largest, sorted)

``alive_bias`` is 0 for live rows and ``DEAD_BIAS`` (-1e30) for dead ones, so a dead row only
comes back when a query has fewer than k live rows (the retriever maps those to -1). Gemm with
transB reads the item matrix in place (no transposed copy of N x d per call).

The bytes are deterministic (fixed opset, IR version, producer, no doc strings with dates): a
unit test regenerates the graph and compares it with the committed file. Needs the ``onnx``
package (train/dev environment); the runtime only loads the committed file.

    .venv/bin/python scripts/make_retrieval_graph.py [--out PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import onnx
from onnx import TensorProto, helper

OPSET = 17
IR_VERSION = 8
DEFAULT_OUT = (
    Path(__file__).resolve().parents[1] / "stream_app" / "serving" / "graphs" / "retrieve.onnx"
)


def build_graph() -> onnx.ModelProto:
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    inputs = [
        helper.make_tensor_value_info("queries", f32, ["queries", "d"]),
        helper.make_tensor_value_info("items", f32, ["items", "d"]),
        helper.make_tensor_value_info("alive_bias", f32, ["items"]),
        helper.make_tensor_value_info("k", i64, [1]),
    ]
    outputs = [
        helper.make_tensor_value_info("top_scores", f32, ["queries", "k"]),
        helper.make_tensor_value_info("rows", i64, ["queries", "k"]),
    ]
    nodes = [
        helper.make_node(
            "Gemm", ["queries", "items", "alive_bias"], ["scores"], name="dot", transB=1
        ),
        helper.make_node(
            "TopK",
            ["scores", "k"],
            ["top_scores", "rows"],
            name="top",
            axis=-1,
            largest=1,
            sorted=1,
        ),  # fmt: skip
    ]
    graph = helper.make_graph(nodes, "retrieve", inputs, outputs)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="streamrec.make_retrieval_graph",
        producer_version="1",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the graph")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(build_graph().SerializeToString(deterministic=True))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
