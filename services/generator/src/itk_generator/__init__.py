"""Generator service: turns one audio chunk and a portrait into a talking-head MP4."""
