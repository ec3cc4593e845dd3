"""Models: loading (local, Hub, bundled GGUF), prompts, generation and log-probabilities, vocabulary
maps across tokenizers."""
