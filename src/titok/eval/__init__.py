"""Evaluation: the task registry, the harness call, `titok eval`, metrics and the generated tasks
(facts, rule)."""
