"""Code shared by the InfiniteTalk services: media constants, streaming, gRPC plumbing, config."""
