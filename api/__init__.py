"""The FastAPI application and the CLI: the only place that wires registry, guard and generator together."""
