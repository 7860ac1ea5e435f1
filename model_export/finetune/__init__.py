"""Fine-tuning rounds, torch side: train a candidate warm-started from CURRENT, gate it against
CURRENT on the same held-out slice, export and publish (the job in ``stream_app.finetune``
schedules rounds and calls this)."""
