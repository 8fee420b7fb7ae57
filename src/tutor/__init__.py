"""tutor: a free-response tutor for LLM training, fine-tuning and alignment."""

__version__ = "0.1.0"
