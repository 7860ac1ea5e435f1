"""Torch side: encoder, multi-task ranker, training, ONNX export with parity gates, publishing
to the registry, ablation and fine-tuning rounds' training.

It imports ``schemas`` and the shared layer (``stream_app.core``, ``stream_app.datagen``,
``stream_app.registry``), never the runtime (serving, Kafka, worker, replay, the fine-tuning
job); the CLI injects its functions into runtime jobs."""
