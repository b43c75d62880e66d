"""Embedding texts: the local model (questions batched, documents in bulk) or a hosted provider."""
