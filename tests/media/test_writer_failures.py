"""The MP4 writer when writing fails: the error reaches the caller, and no half-written file stays.

A full disk is simulated with the file-size limit (RLIMIT_FSIZE) in a child process: past it every
write fails with an OSError, as it does on a full disk, without needing a small filesystem.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from itk_common.video import Mp4Writer

WRITE_PAST_A_LIMIT = """
import resource, signal, sys
from pathlib import Path
import numpy as np
from itk_common.video import Mp4Writer

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
rng = np.random.default_rng(0)
try:
    with Mp4Writer(Path(sys.argv[1]), 128, 96, frame_count=int(sys.argv[3])) as writer:
        for _ in range(int(sys.argv[3])):
            writer.write(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
except OSError as error:
    print("OSError", error.errno)
else:
    print("written")
"""


# Noise does not compress, so each case is far above its limit. With 200 frames the first write
# fails at the first packets (4 kB) or mid-stream (600 kB, about frame 120); 40 frames stay in
# the encoder's and muxer's buffers until the final flush, which is where those fail.
@pytest.mark.parametrize(("limit", "frames"), [(4_000, 200), (600_000, 200), (60_000, 40)])
def test_a_write_that_fails_raises_and_leaves_no_file(tmp_path: Path, limit: int, frames: int) -> None:
    path = tmp_path / "out.mp4"
    run = subprocess.run([sys.executable, "-c", WRITE_PAST_A_LIMIT, str(path), str(limit), str(frames)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[0] == "OSError", run.stdout
    assert not path.exists()


def test_an_error_from_the_frames_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="source ended"), Mp4Writer(path, 64, 64) as writer:
        writer.write(np.zeros((64, 64, 3), np.uint8))
        raise RuntimeError("source ended")
    assert not path.exists()
