"""Runtime scoring with ONNX Runtime (no torch): sessions, providers, text encoding and the
``ServingModel`` that implements the core's ``Scorer`` protocol for one registry version."""
