"""`itk`: submit, follow, cancel, download and list jobs from a terminal.

    itk submit portrait.png speech.mp3 -o out.mp4 [--size 480x832] [--preset fast] [--provider runpod] [--lanes 2]
    itk status JOB | itk watch JOB | itk cancel JOB | itk download JOB [-o out.mp4] | itk list [--wide | -q]
    itk quality VIDEO AUDIO [--portrait IMG] [--json]   (the quality report of any video, computed here)

The server is $ITK_URL (default http://127.0.0.1:8080) or --url; the API key is $ITK_API_KEY.
`submit` and `watch` draw a progress bar that follows the job's server-sent events: frames
done, pieces done, estimated time left. Exit status: 0 when the job completed, 1 when it failed
or was cancelled, 2 for a refused request.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn, TransferSpeedColumn
from rich.table import Table

from itk_client import quality
from itk_client.errors import GatewayError
from itk_client.models import Job
from itk_client.request import default_url
from itk_client.sync import Client

console = Console(stderr=True, highlight=False)
out = Console(highlight=False)

ENVIRONMENT = """environment:
  ITK_URL       the gateway's REST address (default http://127.0.0.1:8080)
  ITK_API_KEY   your API key, where the gateway has keys on (export ITK_API_KEY=<key>)

The image may be a portrait (PNG, JPEG, WebP...) or a video to dub (MP4, MOV, WebM...).
Exit status: 0 when the job completed, 1 when it failed or was cancelled, 2 for a refused request."""


def refusal(error: GatewayError) -> str:
    """The gateway's refusal in the terms of this command: a missing key is ITK_API_KEY to set."""
    if error.status == 401:
        if os.environ.get("ITK_API_KEY"):
            return ("the gateway does not accept the API key in ITK_API_KEY: check it, or ask for a key "
                    "(UNAUTHORIZED, HTTP 401)")
        return ("this gateway needs an API key: export ITK_API_KEY=<your key> and run the command again "
                "(UNAUTHORIZED, HTTP 401)")
    return f"{error.code or 'error'}: {error.message} (HTTP {error.status})"


def parse_size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise argparse.ArgumentTypeError(f"size must look like 480x832, got {text!r}")
    return int(width), int(height)


def parse_box(text: str) -> list[int]:
    try:
        box = [int(value) for value in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4:
        raise argparse.ArgumentTypeError(f"expected X0,Y0,X1,Y1 (four integers in pixels), got {text!r}")
    return box


def describe(job: Job) -> str:
    pieces = f"pieces {sum(p.status == 'done' for p in job.pieces)}/{len(job.pieces)}" if job.pieces else ""
    eta = f"~{_duration(job.eta_sec)} left" if job.eta_sec else ""
    return "  ".join(part for part in (f"{job.status:<9}", pieces, eta) if part)


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 60}m{whole % 60:02d}s"


def follow(client: Client, job_id: str) -> Job:
    """Draw the job's progress until it ends; return the final state."""
    columns = (TextColumn("[bold]{task.fields[job]}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[frames]}"), TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("IN_QUEUE", total=None, job=job_id, frames="")

        def update(job: Job) -> None:
            frames = f"frames {job.frames_done}/{job.frames_total}" if job.frames_total else ""
            progress.update(task, completed=job.frames_done, total=job.frames_total or None,
                            description=describe(job), frames=frames)

        final = client.wait(job_id, on_update=update)
        update(final)
    return final


def download(client: Client, job_id: str, path: Path) -> None:
    columns = (TextColumn("[bold]download"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("", total=None)
        size = client.download(job_id, path, lambda done, total: progress.update(task, completed=done,
                                                                                  total=total or None))
    console.print(f"wrote {path} ({size:,} bytes)")


def finish(client: Client, job: Job, output: Path | None) -> int:
    if job.status != "COMPLETED":
        console.print(f"job {job.id} {job.status}" + (f": {job.error}" if job.error else ""), style="red",
                      soft_wrap=True, markup=False)
        return 1
    if output is not None and job.video_available:
        download(client, job.id, output)
    elif output is not None:
        console.print(f"job {job.id} completed without a local video" + (f": {job.video_url}" if job.video_url else ""))
    return 0


def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    width, height = args.size
    options = {"prompt": args.prompt, "provider": args.provider, "preset": args.preset, "seed": args.seed,
               "lanes": args.lanes, "webhook_url": args.webhook_url, "audio_2": args.audio_2,
               "audio_type": args.audio_type, "boxes": json.dumps(args.box) if args.box else None,
               "stereo_speakers": True if args.stereo_speakers else None}
    job = client.submit(args.image, args.audio, width, height, idempotency_key=args.idempotency_key,
                        **{k: v for k, v in options.items() if v is not None})
    console.print(f"job [bold]{job.id}[/bold] accepted ({job.provider}, {job.width}x{job.height}); "
                  f"watch it in a browser: {client.base_url}/#{job.id}", soft_wrap=True)
    print(job.id, flush=True)  # plain, for scripts: `id=$(itk submit ... --no-wait)`
    if args.no_wait:
        return 0
    output = args.output or Path(f"{job.id}.mp4")
    return finish(client, follow(client, job.id), output)


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    job = client.get(args.job)
    table = Table(show_header=False, box=None)
    for name in ("id", "status", "progress", "provider", "frames_done", "frames_total", "chunks_done", "chunk_count",
                 "duration_sec", "width", "height", "seed", "created_at", "error", "video_url"):
        value = getattr(job, name)
        if value not in ("", None):
            table.add_row(name, str(value))
    out.print(table)
    if job.quality is not None:
        out.print(quality.headline(job.quality))
        if job.quality.get("segments"):
            out.print(quality.segments(job.quality))
    return 0 if job.status != "FAILED" else 1


def cmd_quality(args: argparse.Namespace) -> int:
    """Runs here, without a gateway."""
    try:
        report = quality.compute(args.video, args.audio, args.portrait)
    except quality.QualityUnavailableError as error:
        console.print(f"[red]{error}[/red]")
        return 2
    except ValueError as error:
        console.print(f"[red]{error}[/red]")
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        out.print(quality.headline(report))
        out.print(quality.segments(report))
    return 0


def cmd_watch(client: Client, args: argparse.Namespace) -> int:
    return finish(client, follow(client, args.job), args.output)


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    job = client.cancel(args.job)
    print(f"{job.id} {job.status}")
    return 0


def cmd_download(client: Client, args: argparse.Namespace) -> int:
    download(client, args.job, args.output or Path(f"{args.job}.mp4"))
    return 0


def age(created_at: str, now: datetime | None = None) -> str:
    """kubectl's AGE: 45s, 12m, 3h, 2d."""
    try:
        created = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except ValueError:
        return "?"
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - created).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def job_rows(jobs: list[Job], wide: bool) -> list[list[str]]:
    header = ["ID", "STATUS", "PROGRESS", "AGE"]
    if wide:
        header += ["PROVIDER", "SIZE", "LENGTH", "PIECES", "CREATED"]
    rows = [header]
    for job in jobs:
        row = [job.id, job.status, f"{job.progress}%", age(job.created_at)]
        if wide:
            row += [job.provider or "-", f"{job.width}x{job.height}", f"{job.duration_sec:.1f}s",
                    f"{job.chunks_done}/{job.chunk_count}", job.created_at]
        rows.append(row)
    return rows


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    jobs = client.list(args.limit)
    if args.quiet:
        # One id a line, for `itk list -q | xargs -n1 itk status`.
        for job in jobs:
            print(job.id)
        return 0
    # Plain columns as kubectl prints them: ids are never cut, so they can be copied into
    # `itk status` or `itk watch`; the narrow view fits 80 columns, --wide adds the rest.
    rows = job_rows(jobs, args.wide)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="itk", description="InfiniteTalk: lip-synced talking videos.",
                                     epilog=ENVIRONMENT, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=default_url(), help="gateway REST address (default: $ITK_URL or %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)

    submit = commands.add_parser("submit", help="make a video and follow it to the end", epilog=ENVIRONMENT,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    submit.add_argument("image", type=Path,
                        help="a portrait image (PNG, JPEG, WebP...) or a video to dub (MP4, MOV, WebM...)")
    submit.add_argument("audio", type=Path, help="speech recording (WAV, MP3, FLAC, OGG, M4A)")
    submit.add_argument("-o", "--output", type=Path, help="where the MP4 goes (default: <job id>.mp4)")
    submit.add_argument("--size", type=parse_size, default=(512, 512), help="WIDTHxHEIGHT (default 512x512)")
    submit.add_argument("--preset", choices=("quality", "fast"))
    submit.add_argument("--provider", help="generator pool (see GET /config)")
    submit.add_argument("--lanes", type=int, metavar="N",
                        help="streams rendered side by side, joined at pauses (default: one per free generator; "
                             "1: one continuous stream)")
    submit.add_argument("--prompt")
    submit.add_argument("--seed", type=int)
    submit.add_argument("--webhook-url")
    submit.add_argument("--idempotency-key", help="retrying with the same key never makes a second job")
    submit.add_argument("--no-wait", action="store_true", help="print the job id and return")
    two = submit.add_argument_group("two people talking")
    two.add_argument("--audio-2", type=Path, help="person 2's recording (AUDIO is person 1's)")
    two.add_argument("--stereo-speakers", action="store_true",
                     help="AUDIO is one stereo recording: person 1 on the left channel, person 2 on the right")
    two.add_argument("--box", type=parse_box, action="append",
                     help="a speaker's face box X0,Y0,X1,Y1 in pixels of the portrait; once per speaker, person 1 "
                          "first (default: the faces found in the portrait, left to right)")
    two.add_argument("--audio-type", choices=("para", "add"),
                     help="para: the tracks play together (default); add: person 1's, then person 2's")
    submit.set_defaults(run=cmd_submit)

    for name, helptext, run in (("status", "show a job", cmd_status), ("cancel", "cancel a job", cmd_cancel)):
        command = commands.add_parser(name, help=helptext)
        command.add_argument("job")
        command.set_defaults(run=run)
    watch = commands.add_parser("watch", help="follow a job with a progress bar")
    watch.add_argument("job")
    watch.add_argument("-o", "--output", type=Path, help="download the video when it completes")
    watch.set_defaults(run=cmd_watch)
    fetch = commands.add_parser("download", help="download a finished video")
    fetch.add_argument("job")
    fetch.add_argument("-o", "--output", type=Path)
    fetch.set_defaults(run=cmd_download)
    recent = commands.add_parser("list", help="your recent jobs")
    recent.add_argument("--limit", type=int, default=20)
    view = recent.add_mutually_exclusive_group()
    view.add_argument("--wide", action="store_true", help="more columns: provider, size, length, pieces")
    view.add_argument("-q", "--quiet", action="store_true", help="only the job ids, one a line")
    recent.set_defaults(run=cmd_list)
    report = commands.add_parser("quality", help="the quality report of any video (computed here, no gateway)")
    report.add_argument("video", type=Path, help="the video (MP4, MOV, WebM...)")
    report.add_argument("audio", type=Path, help="the recording it should be in sync with")
    report.add_argument("--portrait", type=Path, help="the picture it was made from (default: its first frame)")
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    report.set_defaults(run=cmd_quality, local=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("image", "audio", "video", "portrait", "audio_2"):
        path = getattr(args, name, None)
        if path is not None and not path.is_file():
            console.print(f"[red]{name}: no such file: {path}[/red]", soft_wrap=True)
            return 2
    if getattr(args, "local", False):
        return int(args.run(args))
    try:
        with Client(args.url) as client:
            return int(args.run(client, args))
    except GatewayError as error:
        # One line, whatever the terminal's width: the terminal wraps it, rich does not cut a phrase.
        console.print(refusal(error), style="red", soft_wrap=True, markup=False)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted; the job goes on (itk watch <id> to follow it again)")
        return 130


if __name__ == "__main__":
    sys.exit(main())
