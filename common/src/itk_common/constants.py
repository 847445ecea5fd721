"""Media constants every service agrees on.

InfiniteTalk consumes 16 kHz mono audio and produces 25 fps video, so one video frame spans
exactly 640 audio samples; every chunk boundary is a multiple of that.
"""

SAMPLE_RATE = 16_000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640

# gRPC messages carrying media never exceed this; large blobs travel as several pieces.
MAX_PIECE_BYTES = 1024 * 1024
# Room for the rest of a message around a full piece.
GRPC_MAX_MESSAGE_BYTES = MAX_PIECE_BYTES + 64 * 1024


def frames_for_samples(samples: int) -> int:
    """Video frames needed to cover `samples` audio samples (the last frame may be partial)."""
    return -(-samples // SAMPLES_PER_FRAME)
