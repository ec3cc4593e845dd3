"""The stages every method builds on (synth, score, select, align, train), the stage runner, the
model card, and the real-data LoRA training the demo and bench use for experts."""
