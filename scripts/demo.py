"""`make run`: bring the four services up, render the bundled sample through the REST bridge, stop.

The request is the seed API's JSON (base64 image and audio), so this is also what an existing
client of that API does. The result lands in out/demo.mp4.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from itk_client import Client, Job  # noqa: E402
from itk_client.cli import follow  # noqa: E402
from scripts.stack import Stack  # noqa: E402

SAMPLE = ROOT / "assets" / "sample"


def run_job(stack: Stack, image: Path, audio: Path, width: int, height: int, out: Path) -> Job:
    with Client(stack.rest_url) as client:
        job_id = client.submit_json(image.read_bytes(), audio.read_bytes(), width, height,
                                    prompt="A woman is talking to the camera.")
        print(f"job {job_id} accepted")
        final = follow(client, job_id)  # a progress bar following the job's server-sent events
        if final.status != "COMPLETED":
            raise SystemExit(f"job ended {final.status}: {final.error}")
        out.parent.mkdir(parents=True, exist_ok=True)
        client.download(job_id, out)
    return final


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo.mp4")
    parser.add_argument("--image", type=Path, default=SAMPLE / "portrait.png")
    parser.add_argument("--audio", type=Path, default=SAMPLE / "speech.wav")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--generators", type=int, default=2)
    parser.add_argument("--backend", default="preview")
    # Short chunks so the sample shows the split, the parallel generation and the stitch.
    parser.add_argument("--chunk-target-sec", type=float, default=8.0)
    args = parser.parse_args()

    from itk_common.video import probe_video

    with tempfile.TemporaryDirectory(prefix="itk-demo-") as workdir:
        stack = Stack(Path(workdir), generators=args.generators, backend=args.backend,
                      gateway_env={"CHUNK_TARGET_SEC": str(args.chunk_target_sec)})
        print("starting splitter, stitcher, "
              f"{args.generators} generator(s) ({args.backend}) and gateway on loopback ...")
        started = time.monotonic()
        with stack:
            print(stack.describe())
            state = run_job(stack, args.image, args.audio, args.width, args.height, args.out)
        elapsed = time.monotonic() - started
    info = probe_video(args.out)
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}: "
          f"{info.width}x{info.height}, {info.frame_count} frames at {info.fps:g} fps "
          f"({info.duration_sec:.2f} s video, {info.audio_duration_sec:.2f} s audio), "
          f"{state.chunk_count} chunks, {elapsed:.1f} s in all")
    # The addresses printed above closed with the services: say how to keep them.
    print("The services have stopped, so the addresses above no longer answer. To keep them and the "
          "web page up, run `make up` (Ctrl-C stops it).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
