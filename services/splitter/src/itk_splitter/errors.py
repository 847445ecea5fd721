"""Errors caused by what the client sent; the server answers them with INVALID_ARGUMENT."""


class AudioInputError(ValueError):
    """The uploaded audio cannot be split; the message says why and is safe to show the client."""


class AudioDecodeError(AudioInputError):
    """The bytes are not audio any decoder understands."""


class EmptyAudioError(AudioInputError):
    """The file is valid audio but holds no samples."""
