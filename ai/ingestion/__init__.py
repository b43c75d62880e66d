"""Ingestion: reading uploads into text and cutting text into passages."""
