"""InfiniteTalk gateway: public gRPC API, REST bridge, job state and orchestration."""
