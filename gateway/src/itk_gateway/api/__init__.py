"""Public API surfaces: the REST bridge (seed-compatible) and the gRPC Gateway service."""
