"""Dispatch to generator pools and the gRPC clients of the splitter, generators and stitcher."""
