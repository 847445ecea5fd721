"""Who may call the gateway and how much: API keys, principals, rate and upload limits.

`Guard` is the one decision point; the REST middleware (`rest_middleware.py`) and the gRPC interceptor
(`grpc_interceptor.py`) only carry credentials to it and its answers back, and the job service
enforces ownership with the `Principal` they hand it.
"""
