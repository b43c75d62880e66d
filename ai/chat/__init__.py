"""Chat: accepting a turn, answering it from the model as a resumable stream, and its limits."""
