"""llm settings."""
