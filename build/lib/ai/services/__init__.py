"""What the AI app can do, one module per use case."""
