"""The project wiring on top of every app: URL confs, the ASGI app, signup, the operator admin."""
