"""titok: transplant a LoRA adapter to another base model without the training data (TiTok)."""

__version__ = "0.1.0"
