"""Errors the stitching code raises on purpose; anything else is a bug."""


class StitchInputError(ValueError):
    """The request itself is wrong (missing part, wrong frame count, undecodable media...).

    The message names what is wrong and is safe to show to the client.
    """


class StitchCancelledError(Exception):
    """The caller went away, so the work was abandoned."""
