"""Faithful local fakes of the RunPod, Beam and Modal APIs, on loopback, for the provider backends."""
