"""Remote GPU providers as generator backends: RunPod, Beam and Modal (`GENERATOR_BACKEND`)."""
