"""Incremental fine-tuning side job: durable event buffer, gated rounds, publish + notify."""
