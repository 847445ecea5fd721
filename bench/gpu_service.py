"""The product path on a GPU: the four services as `make up` starts them, the InfiniteTalk backend
on full-size random weights, and what a person gets through the REST API.

Steps: write a model directory of random weights in the published layout (bench/random_model.py,
skipped when one is there), start splitter, stitcher, one generator (GENERATOR_BACKEND=infinitetalk)
and the gateway as separate processes (scripts/stack.py), then send two speech jobs:
  1. the seed API's JSON body exactly as its client sends it (no force_offload, no preset: the
     generator's default preset, INFINITETALK_PRESET);
  2. multipart with preset=turbo and the portrait mirrored (a new portrait, encoded once as the
     first job's was, so the two first clips compare like for like).
For each it prints: cold start (processes started to every service SERVING, the generator's
load and warm-up included; first job only), POST to the first playable segment of the live
stream (the playlist lists it and it downloads) and where that time goes (before the first clip
starts: upload, split, dispatch, audio features; the first clip; after it: delivery to the
gateway and the live segment), wall time (POST to COMPLETED), the sum of the
generator's clip times (its log: the model's time per clip), the overhead (wall / sum of clips),
model loads during the job, and peak GPU memory (nvidia-smi, the whole card). With
--offload-idle-sec it then waits until the idle generator has moved its weights to pinned host
memory and sends a short job, whose first chunk brings them back: the return cost is printed.

    python bench/gpu_service.py [--model-dir DIR] [--seed-sec 20] [--turbo-sec 60] [--only seed|turbo]
        [--generator-env VAE_DTYPE=bf16 ...] [--json OUT]
    python bench/gpu_service.py --tiny   # the same steps on the tests' tiny model, on the CPU
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.random_model import write_random_model_dir  # noqa: E402
from bench.table import format_table  # noqa: E402
from scripts.stack import Stack  # noqa: E402
from tests.helpers.audio import encode_audio, speech_like  # noqa: E402
from tests.helpers.rest import call, submit_multipart, wait_for_job  # noqa: E402

PORTRAIT = ROOT / "assets" / "sample" / "portrait.png"
CLIP_LINE = re.compile(r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*"
                       r"clip \d+ of chunk (?P<job>\S+)/\d+: \d+ frames in (?P<sec>[0-9.]+) s", re.MULTILINE)
RETURN_LINE = re.compile(r"weights back on \S+ for the next chunk: (?P<gib>[0-9.]+) GiB in (?P<sec>[0-9.]+) s")
ENCODE_LINE = re.compile(r"(?:image|prompt) encoded in (?P<sec>[0-9.]+) s")
LOADED = "InfiniteTalk DiT loaded"


class GpuMemory(threading.Thread):
    """The card's peak memory in use (nvidia-smi every 0.2 s); None without nvidia-smi."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.available = shutil.which("nvidia-smi") is not None
        self.peak_mib = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while self.available and not self.stopping.wait(0.2):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                      "-i", "0"], capture_output=True, text=True, timeout=10).stdout
                self.peak_mib = max(self.peak_mib, int(out.strip().splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                continue

    def take_peak(self) -> float | None:
        """Peak since the last call, in GiB."""
        if not self.available:
            return None
        peak, self.peak_mib = self.peak_mib, 0
        return peak / 1024


def first_playable(base_url: str, job_id: str, started: float, stop: threading.Event, found: dict) -> None:
    """Seconds from `started` until the playlist lists a segment that downloads."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"{base_url}/jobs/{job_id}/hls/index.m3u8", timeout=30) as reply:
                names = [line for line in reply.read().decode().splitlines() if line.startswith("seg-")]
            if names:
                with urllib.request.urlopen(f"{base_url}/jobs/{job_id}/hls/{names[0]}", timeout=30) as reply:
                    if reply.status == 200 and reply.read():
                        found["sec"] = time.monotonic() - started
                        return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)


def seed_body(image: bytes, audio: bytes, width: int, height: int) -> bytes:
    """The seed API client's JSON body, field for field."""
    return json.dumps({"image_base64": base64.b64encode(image).decode(),
                       "audio_base64": base64.b64encode(audio).decode(), "width": width, "height": height,
                       "provider": "runpod", "push_to_s3": False, "dry_run": False}).encode()


def run_job(stack: Stack, name: str, submit, memory: GpuMemory, log: Path, timeout: float) -> dict:
    before = log.read_text(errors="replace")
    loads_before = before.count(LOADED)
    memory.take_peak()
    started, posted_at = time.monotonic(), time.time()
    job_id = submit()
    found: dict = {}
    stop = threading.Event()
    watcher = threading.Thread(target=first_playable, args=(stack.rest_url, job_id, started, stop, found), daemon=True)
    watcher.start()
    state = wait_for_job(stack.rest_url, job_id, timeout=timeout, poll=0.1)
    wall = time.monotonic() - started
    stop.set()
    watcher.join(35)
    text = log.read_text(errors="replace")
    matches = [m for m in CLIP_LINE.finditer(text) if m["job"] == job_id]
    clips = [float(m["sec"]) for m in matches]
    # Where the first playable second's time goes: before the first clip starts (upload, split,
    # dispatch, audio features), the clip itself, and after it (to the gateway, the live segment).
    first_clip_start = first_clip_to_playable = None
    if matches:
        first_done = datetime.strptime(matches[0]["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp() - posted_at
        first_clip_start = first_done - clips[0]
        if "sec" in found:
            first_clip_to_playable = found["sec"] - first_done
    # A new portrait or prompt is encoded once (CLIP, the VAE over a whole clip, umT5), inside the
    # job's first clip; later jobs with the same ones skip it. Telling it apart from compiling:
    encoded = sum(float(m["sec"]) for m in ENCODE_LINE.finditer(text[len(before):]))
    return {"job": name, "id": job_id, "status": state["status"], "error": state.get("error", ""),
            "pieces": state.get("chunk_count"), "first_playable_sec": found.get("sec"),
            "first_clip_start_sec": first_clip_start, "first_clip_to_playable_sec": first_clip_to_playable,
            "wall_sec": wall,
            "clips": len(clips), "clip_sum_sec": sum(clips), "first_clip_sec": clips[0] if clips else None,
            "encode_sec": encoded,
            "mean_clip_sec": sum(clips) / len(clips) if clips else None,
            # Without the job's first clip (81 frames, the portrait's encoding): the steady clip time.
            "later_clip_mean_sec": sum(clips[1:]) / (len(clips) - 1) if len(clips) > 1 else None,
            "overhead": wall / sum(clips) if clips else None,
            "model_loads": text.count(LOADED) - loads_before, "peak_gpu_gib": memory.take_peak()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="random weights go here (written when missing)")
    parser.add_argument("--workdir", type=Path, help="logs and data (default: a temporary folder)")
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU: a check of this script")
    parser.add_argument("--seed-sec", type=float, default=60.0, help="speech of the seed-body job")
    parser.add_argument("--turbo-sec", type=float, default=60.0, help="speech of the multipart turbo job")
    parser.add_argument("--size", default="480x832", help="WIDTHxHEIGHT asked for")
    parser.add_argument("--preset", default="turbo", help="the generator's default preset (INFINITETALK_PRESET)")
    parser.add_argument("--dtype", default="", help="the generator's DTYPE (default: its own, bf16 on a GPU)")
    parser.add_argument("--warmup", default="", help="INFINITETALK_WARMUP_BUCKETS (default: the generator's)")
    parser.add_argument("--offload-idle-sec", type=float, default=0.0,
                        help="set OFFLOAD_IDLE_SEC and measure the weights' return after idling")
    parser.add_argument("--only", choices=("seed", "turbo"),
                        help="send only this job (a 60 s job and a cold start fit one 10-minute device call)")
    parser.add_argument("--generator-env", action="append", default=[], metavar="NAME=VALUE",
                        help="another generator setting (repeatable), e.g. VAE_DTYPE=bf16")
    parser.add_argument("--job-timeout", type=float, default=1800.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="itk-bench-service-"))
    model_dir = args.model_dir or workdir / "model"

    started = time.monotonic()
    write_random_model_dir(model_dir, full=not args.tiny)
    print(f"model directory ready in {time.monotonic() - started:.1f} s: {model_dir}", flush=True)

    generator_env = {"MODEL_DIR": str(model_dir), "INFINITETALK_PRESET": args.preset, "LOG_LEVEL": "INFO"}
    gateway_env = {"WEBHOOK_ALLOW_PRIVATE": "true", "GENERATOR_WAIT_SEC": "1800"}
    if args.dtype:
        generator_env["DTYPE"] = args.dtype
    if args.warmup:
        generator_env["INFINITETALK_WARMUP_BUCKETS"] = args.warmup
    if args.offload_idle_sec:
        generator_env["OFFLOAD_IDLE_SEC"] = str(args.offload_idle_sec)
    for setting in args.generator_env:
        name, sep, value = setting.partition("=")
        if not sep or not name:
            parser.error(f"--generator-env wants NAME=VALUE, got {setting!r}")
        generator_env[name] = value
    if args.tiny:
        # The tests' settings: 32x32 and 21-frame clips keep a CPU busy for seconds, not hours.
        generator_env |= {"DEVICE": "cpu", "INFINITETALK_SIZE": "32x32", "INFINITETALK_CLIP_FRAMES": "21"}
        gateway_env |= {"CLIP_FRAMES": "21", "CHUNK_TARGET_SEC": "2"}
    stack = Stack(workdir / "stack", generators=1, backend="infinitetalk", generator_env=generator_env,
                  gateway_env=gateway_env)
    memory = GpuMemory()
    memory.start()
    image = PORTRAIT.read_bytes()
    # The second job's own portrait (mirrored), so both jobs pay a portrait's encoding in their
    # first clip and the first-job-after-start comparison is like for like.
    mirrored = cv2.imencode(".png", cv2.flip(cv2.imread(str(PORTRAIT)), 1))[1].tobytes()
    rows = []
    report: dict = {"size": args.size, "preset": args.preset, "generator_env": args.generator_env}
    try:
        started = time.monotonic()
        stack.start(timeout=1800)
        report["cold_start_sec"] = time.monotonic() - started
        report["peak_gpu_gib_loaded"] = memory.take_peak()
        print(f"cold start (processes to SERVING, load and warm-up): {report['cold_start_sec']:.1f} s", flush=True)
        log = stack.generator_services[0].log_path
        seed_audio = encode_audio(speech_like(args.seed_sec, seed=21), 16_000, "wav")
        turbo_audio = encode_audio(speech_like(args.turbo_sec, seed=22), 16_000, "wav")

        def submit_seed(audio: bytes = seed_audio) -> str:
            status, reply = call("POST", f"{stack.rest_url}/jobs", seed_body(image, audio, width, height))
            if status != 202:
                raise RuntimeError(f"seed-body job refused: {status} {reply}")
            return str(reply["id"])

        jobs = {"seed": (f"seed JSON body, {args.seed_sec:g} s (default preset {args.preset})", submit_seed),
                "turbo": (f"multipart preset=turbo, {args.turbo_sec:g} s",
                          lambda: submit_multipart(stack.rest_url, mirrored, turbo_audio, width=width, height=height,
                                                   preset="turbo"))}
        for key, (name, submit) in jobs.items():
            if args.only and key != args.only:
                continue
            result = run_job(stack, name, submit, memory, log, args.job_timeout)
            rows.append(result)
            print(json.dumps(result), flush=True)
            if args.json:
                args.json.write_text(json.dumps({**report, "jobs": rows}, indent=2))
        if args.offload_idle_sec:
            deadline = time.monotonic() + args.offload_idle_sec + 300
            while "moved to pinned host memory" not in log.read_text(errors="replace"):
                if time.monotonic() > deadline:
                    raise TimeoutError("the idle generator did not offload its weights")
                time.sleep(0.5)
            report["peak_gpu_gib_parked"] = memory.take_peak()
            short = encode_audio(speech_like(3.0, seed=23), 16_000, "wav")
            result = run_job(stack, "after idle offload, 3 s", lambda: submit_seed(short), memory, log,
                             args.job_timeout)
            rows.append(result)
            back = list(RETURN_LINE.finditer(log.read_text(errors="replace")))
            if back:
                report["return_gib"], report["return_sec"] = float(back[-1]["gib"]), float(back[-1]["sec"])
    finally:
        memory.stopping.set()
        stack.stop()
        if args.json:
            args.json.write_text(json.dumps({**report, "jobs": rows}, indent=2))

    def fmt(value: float | None, digits: int = 1) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    print(format_table("The service on one generator (bench/gpu_service.py)", [
        {"job": r["job"], "status": r["status"], "pieces": r["pieces"],
         "POST to first playable s": fmt(r["first_playable_sec"]),
         "of which before the first clip s": fmt(r["first_clip_start_sec"]),
         "after the first clip s": fmt(r["first_clip_to_playable_sec"]),
         "wall s": fmt(r["wall_sec"]), "clips": r["clips"],
         "sum of clips s": fmt(r["clip_sum_sec"]), "first clip s": fmt(r["first_clip_sec"]),
         "of which encoding s": fmt(r["encode_sec"], 2), "mean clip s": fmt(r["mean_clip_sec"], 2),
         "later clips mean s": fmt(r["later_clip_mean_sec"], 2),
         "wall / clips": fmt(r["overhead"], 3), "model loads": r["model_loads"], "peak GPU GiB": fmt(r["peak_gpu_gib"])}
        for r in rows]))
    print(f"cold start {fmt(report.get('cold_start_sec'))} s; peak GPU memory once loaded and warm "
          f"{fmt(report.get('peak_gpu_gib_loaded'))} GiB")
    if "return_sec" in report:
        print(f"idle offload: {fmt(report.get('peak_gpu_gib_parked'))} GiB in use while parked; "
              f"{report['return_gib']:.2f} GiB back on the GPU in {report['return_sec']:.2f} s")
    return 0 if all(r["status"] == "COMPLETED" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
