"""Watching a job while it renders: HLS (fMP4) segments of the finished parts, in order."""
