"""The incremental fine-tuning job (runtime side): consumer, durable buffer, round scheduling,
notices and shadow promotion. The round's training is injected (``model_export.finetune``)."""
