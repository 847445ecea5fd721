"""The growing HLS stream of a job: segments made as clips are decoded, the playlist read from them.

A generator that streams its clips (InfiniteTalk: one clip of 81 frames, then 72 new frames per
clip) sends each clip's frames as soon as they are decoded; each becomes a segment once every
frame before it has one, so a watcher starts after the first clip, not after the first part. A
part whose clips did not come (a remote provider, a preview generator) becomes one segment when
it finishes; so does the rest of a part whose first clips came from an attempt that failed. The
final MP4 is stitched from the parts themselves, whatever the live stream showed.

Layout under DATA_DIR/live/<job id>/:
    audio.m4a                the recording encoded once as AAC (started when the job starts)
    init-<n>.mp4             initialization sections (one, unless a part's codec setup differs)
    seg-<index>.m4s          media segments in order (a clip or a part each), each written only
                             after every earlier one
    clip-<part>-<frame>.mp4  clips received ahead of the segments before them (not published)
    manifest.json            what the playlist lists: segments (init, start, frames, part), ended
Files are written under a temporary name and renamed, and the manifest is replaced last, so a
reader never sees a segment that is not complete. With a shared blob store (several gateway
replicas) each file is published as it is written, the manifest last, and a replica that does
not make the job's stream reads the manifest from the store on every request and fetches the
segments it lists. A job that does not complete loses its
folder; a completed job keeps it until its video is deleted.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import threading
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

from itk_common.constants import FPS
from itk_gateway.live.segments import TIMELINE_START, SegmentError, cut_part, encode_recording, mux_segment
from itk_gateway.storage.files import JobFiles
from itk_gateway.storage.store import CHUNK_DONE, JobStore

log = logging.getLogger(__name__)
SEGMENT_NAME = re.compile(r"^(init-[0-9]{1,5}\.mp4|seg-[0-9]{5}\.m4s)$")
BTRT = b"btrt"


@dataclass
class SegmentEntry:
    index: int
    init: int
    start_frame: int
    frame_count: int
    # The part the frames belong to and where in it they start (-1: a manifest from before clip
    # segments, where segment `index` was part `index` whole).
    part: int = -1
    part_offset: int = 0

    @property
    def part_index(self) -> int:
        return self.index if self.part < 0 else self.part

    @property
    def name(self) -> str:
        return f"seg-{self.index:05d}.m4s"

    @property
    def duration_sec(self) -> float:
        return self.frame_count / FPS


@dataclass
class Manifest:
    segments: list[SegmentEntry] = field(default_factory=list)
    inits: int = 0
    ended: bool = False

    @classmethod
    def load(cls, path: Path) -> Manifest:
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        return cls([SegmentEntry(**s) for s in raw["segments"]], raw["inits"], raw["ended"])

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"segments": [asdict(s) for s in self.segments], "inits": self.inits,
                                   "ended": self.ended}))
        tmp.replace(path)


def _comparable_init(init: bytes) -> bytes:
    """The initialization section without its bit-rate box, which differs between any two parts."""
    at = init.find(BTRT)
    if at < 0 or at + 16 > len(init):
        return init
    return init[:at + 4] + bytes(12) + init[at + 16:]


def render_playlist(manifest: Manifest, target_duration_sec: float) -> str:
    """An HLS EVENT playlist (fMP4, version 7); ends with EXT-X-ENDLIST once the job completed."""
    lines = [
        "#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-PLAYLIST-TYPE:EVENT",
        f"#EXT-X-TARGETDURATION:{max(1, math.ceil(target_duration_sec))}",
        "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-INDEPENDENT-SEGMENTS",
        "#EXT-X-START:TIME-OFFSET=0,PRECISE=YES",
    ]
    current_init = -1
    for segment in manifest.segments:
        if segment.init != current_init:
            if current_init >= 0:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f'#EXT-X-MAP:URI="init-{segment.init}.mp4"')
            current_init = segment.init
        lines.append(f"#EXTINF:{segment.duration_sec:.3f},")
        lines.append(segment.name)
    if manifest.ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


class _JobStream:
    """One job's segment maker; `lock` serialises segment making for the job."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lock = threading.Lock()
        self.audio_ready = threading.Event()
        self.audio_error: str = ""
        # part -> {first frame in the part: (frame count, clip file)}, clips not yet segments.
        self.clips: dict[int, dict[int, tuple[int, Path]]] = {}


class LivePublisher:
    """Makes each job's HLS segments as its parts finish; runners call it, the APIs read it."""

    def __init__(self, data_dir: Path, store: JobStore, files: JobFiles) -> None:
        self.root = data_dir / "live"
        self.root.mkdir(parents=True, exist_ok=True)
        self.store = store
        self.files = files
        self._streams: dict[str, _JobStream] = {}
        self._lock = threading.Lock()

    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    def manifest(self, job_id: str) -> Manifest:
        path = self.folder(job_id) / "manifest.json"
        with self._lock:
            making = job_id in self._streams
        if not making:
            self.files.refresh(path)  # another replica may be making it
        return Manifest.load(path)

    def segment_path(self, job_id: str, name: str) -> Path | None:
        """A segment or initialization file of the job, if `name` is one and it exists."""
        if not SEGMENT_NAME.fullmatch(name):
            return None
        path = self.folder(job_id) / name
        return path if self.files.fetch(path) else None

    def _write(self, path: Path, data: bytes) -> None:
        _write(path, data)
        self.files.publish(path)

    def _save(self, manifest: Manifest, path: Path) -> None:
        manifest.save(path)
        self.files.publish(path)

    # -- called by the job runner ------------------------------------------------------------

    def _stream(self, job_id: str) -> _JobStream:
        """The job's stream state; made on first use, which starts encoding the audio."""
        with self._lock:
            stream = self._streams.get(job_id)
            if stream is not None:
                return stream
            stream = self._streams[job_id] = _JobStream(self.folder(job_id))
        stream.folder.mkdir(parents=True, exist_ok=True)
        threading.Thread(target=self._encode_audio, args=(job_id, stream), name=f"{job_id}-live-audio",
                         daemon=True).start()
        return stream

    def start(self, job_id: str) -> None:
        """Encode the recording's audio in the background while the first parts render."""
        self._stream(job_id)

    def _encode_audio(self, job_id: str, stream: _JobStream) -> None:
        target = stream.folder / "audio.m4a"
        try:
            # A replica taking the job over goes on with the stream the previous driver made.
            self.files.fetch(stream.folder / "manifest.json")
            if not self.files.fetch(target):
                encode_recording(self.files.sound(job_id), target)
                self.files.publish(target)
        except (SegmentError, OSError) as exc:
            stream.audio_error = str(exc)
            log.warning("job %s: no live stream: %s", job_id, exc)
        finally:
            stream.audio_ready.set()
        if not stream.audio_error:
            self._catch_up(job_id, stream)

    def _catch_up(self, job_id: str, stream: _JobStream) -> None:
        """Segments for clips that arrived while the audio was still being encoded (a long
        recording): without this the first clip would wait for the next one, a whole clip later."""
        job = self.store.get_job(job_id)
        with self._lock:
            current = self._streams.get(job_id) is stream
        if job is None or job.finished or not current:
            return
        with stream.lock:
            if not any(stream.clips.values()):
                return
            try:
                self._extend(job_id, stream)
            except (SegmentError, OSError) as exc:
                log.warning("job %s: live segment failed: %s", job_id, exc)

    def clip_ready(self, job_id: str, part: int, first_frame: int, frame_count: int, clip: Path) -> None:
        """A clip of part `part` arrived from its generator (frames [first_frame, +frame_count)):
        keep it (the file is moved) and make segments of whatever now follows the stream's end."""
        job = self.store.get_job(job_id)
        with self._lock:
            known = job_id in self._streams
        if job is None or job.finished or not known or frame_count < 1:
            return
        stream = self._stream(job_id)
        target = stream.folder / f"clip-{part:05d}-{first_frame:05d}.mp4"
        with stream.lock:
            shutil.move(clip, target)
            stream.clips.setdefault(part, {})[first_frame] = (frame_count, target)
        if not stream.audio_ready.is_set() or stream.audio_error:
            return  # the clip waits; the next clip or the part's end makes its segment
        with stream.lock:
            try:
                self._extend(job_id, stream)
            except (SegmentError, OSError) as exc:
                log.warning("job %s: live segment failed: %s", job_id, exc)

    def part_ready(self, job_id: str, timeout: float = 600.0) -> None:
        """Append segments for every finished part that now follows the ones already made."""
        job = self.store.get_job(job_id)
        with self._lock:
            known = job_id in self._streams
        if job is None or (job.finished and not known):
            return  # a late call for a job whose stream is already closed or removed
        stream = self._stream(job_id)
        if not stream.audio_ready.wait(timeout) or stream.audio_error:
            return
        with stream.lock:
            try:
                self._extend(job_id, stream)
            except (SegmentError, OSError) as exc:
                log.warning("job %s: live segment failed: %s", job_id, exc)

    def _extend(self, job_id: str, stream: _JobStream) -> None:
        """Append segments, in order, for the frames that now follow the stream's end: the pending
        clips of the first part not yet covered, then, once a part is done, whatever of it is left."""
        job = self.store.get_job(job_id)
        if job is None:
            return
        manifest_path = stream.folder / "manifest.json"
        manifest = Manifest.load(manifest_path)
        covered = covered_frames(manifest)
        start_frame = sum(s.frame_count for s in manifest.segments)
        if manifest.inits:
            self.files.fetch(stream.folder / f"init-{manifest.inits - 1}.mp4")
        added = False
        for chunk in self.store.chunks(job_id):
            have = covered.get(chunk.idx, 0)
            pending = stream.clips.get(chunk.idx, {})
            for first in [first for first in pending if first < have]:  # already covered (a retried part)
                pending.pop(first)[1].unlink(missing_ok=True)
            if have >= chunk.frame_count:
                continue
            last_part = job.split_done and chunk.idx == job.chunk_count - 1
            while have in pending and have < chunk.frame_count:
                count, clip = pending.pop(have)
                count = min(count, chunk.frame_count - have)
                self._append(manifest, stream, clip, chunk.idx, have, start_frame, count,
                             last_part and have + count == chunk.frame_count)
                clip.unlink(missing_ok=True)
                have += count
                start_frame += count
                added = True
            part = self.files.part(job_id, chunk.idx)
            if have < chunk.frame_count and chunk.status == CHUNK_DONE and part.exists():
                count = chunk.frame_count - have
                if have == 0:
                    self._append(manifest, stream, part, chunk.idx, 0, start_frame, count, last_part)
                else:
                    rest = stream.folder / f"rest-{chunk.idx:05d}.mp4"
                    try:
                        cut_part(part, have, rest)
                        self._append(manifest, stream, rest, chunk.idx, have, start_frame, count, last_part)
                    finally:
                        rest.unlink(missing_ok=True)
                have += count
                start_frame += count
                added = True
            if have < chunk.frame_count:
                break
        if added:
            self._save(manifest, manifest_path)
            self.store.notify(job_id)

    def _append(self, manifest: Manifest, stream: _JobStream, video: Path, part: int, offset: int,
                start_frame: int, frame_count: int, last: bool) -> None:
        """`video` (frames `offset`.. of part `part`) as the next segment, at `start_frame`."""
        index = len(manifest.segments)
        segment = mux_segment(video, stream.folder / "audio.m4a", start_frame, frame_count, last,
                              stream.folder / f"seg-{index:05d}.mux")
        last_init = stream.folder / f"init-{manifest.inits - 1}.mp4"
        if manifest.inits == 0 or _comparable_init(segment.init) != _comparable_init(last_init.read_bytes()):
            last_init = stream.folder / f"init-{manifest.inits}.mp4"
            self._write(last_init, segment.init)
            manifest.inits += 1
        entry = SegmentEntry(index, manifest.inits - 1, start_frame, frame_count, part, offset)
        self._write(stream.folder / entry.name, segment.media)
        manifest.segments.append(entry)

    def complete(self, job_id: str) -> None:
        """The job completed: make what is left and close the playlist. A stream that misses a
        part (its audio or a segment could not be made) is removed rather than ended short."""
        stream = self._stream(job_id)
        self.part_ready(job_id)
        job = self.store.get_job(job_id)
        with stream.lock:
            manifest_path = stream.folder / "manifest.json"
            manifest = Manifest.load(manifest_path)
            covered = covered_frames(manifest)
            chunks = self.store.chunks(job_id)
            complete = (job is not None and len(chunks) == job.chunk_count
                        and all(covered.get(c.idx, 0) >= c.frame_count for c in chunks))
            if complete:
                manifest.ended = True
                self._save(manifest, manifest_path)
        if not complete:
            log.warning("job %s: live stream incomplete (%d segments); removed, the MP4 is unaffected", job_id,
                        len(manifest.segments))
            self.discard(job_id)
            return
        self._forget(job_id)
        self.store.notify(job_id)

    def discard(self, job_id: str) -> None:
        """The job ended without a video, or its video was deleted: remove its stream."""
        with self._lock:
            stream = self._streams.pop(job_id, None)
        if stream is not None:
            with stream.lock:
                self.files.remove_tree(stream.folder)
        self.files.remove_tree(self.folder(job_id))
        self.store.notify(job_id)

    def stop(self, job_id: str) -> None:
        """The gateway stops: keep the files (the resumed job continues them), drop the state."""
        self._forget(job_id)

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._streams.pop(job_id, None)


def covered_frames(manifest: Manifest) -> dict[int, int]:
    """Part -> frames of it the stream's segments cover (from the part's start)."""
    covered: dict[int, int] = {}
    for segment in manifest.segments:
        covered[segment.part_index] = segment.part_offset + segment.frame_count
    return covered


def target_duration(frame_counts: list[int]) -> float:
    """EXT-X-TARGETDURATION: the longest segment, which is the longest chunk of the plan."""
    return float(max((Fraction(n, FPS) for n in frame_counts), default=Fraction(1)))


def timeline_start_sec() -> float:
    return float(TIMELINE_START)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
