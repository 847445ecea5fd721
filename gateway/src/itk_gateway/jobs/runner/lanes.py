"""Lane planning: how many continuous streams a job is split into, and what the splitter is asked.

A lane is a stretch of the recording rendered as one stream, piece after piece, each piece
continuing from its predecessor's motion frames; lanes render side by side, one per generator
slot, and meet at seams in pauses. More lanes finish sooner on more generators; one lane has no
seam at all.
"""

from __future__ import annotations

from infinitetalk.v1 import splitter_pb2
from itk_gateway.jobs.runner.context import JobContext
from itk_gateway.storage.store import JobRecord

# The stored lane count of a job planned as independent chunks (0 in the store means "not planned yet").
INDEPENDENT_CHUNKS = -1


def lane_count(ctx: JobContext, job: JobRecord) -> int:
    """The lanes to plan: what the job asked for, else one per generator slot it can use now
    (free pool capacity, less what other jobs wait for), within MAX_CONCURRENT_CHUNKS. On a
    pool whose generators cannot continue motion (remote providers) 0: independent chunks cut
    at pauses, all in parallel. A resumed job keeps the choice it was first planned with (the
    store says INDEPENDENT_CHUNKS for 0), so its finished pieces still fit."""
    if job.lane_count:
        return max(0, job.lane_count)
    pool = ctx.backends.pools[job.pool]
    if job.options.lanes > 0:
        count = job.options.lanes
    elif not pool.continues_motion():
        count = 0
    else:
        count = max(1, min(pool.free_slots(), ctx.settings.max_concurrent_chunks))
    ctx.store.update_job(ctx.job_id, lane_count=count or INDEPENDENT_CHUNKS)
    job.lane_count = count or INDEPENDENT_CHUNKS
    return count


def split_options(ctx: JobContext, job: JobRecord) -> splitter_pb2.SplitOptions:
    """What the splitter is asked for this job: its lanes, piece length, context and seam fades."""
    settings = ctx.settings
    target = job.options.chunk_target_sec or settings.chunk_target_sec
    options = splitter_pb2.SplitOptions(
        chunk_target_sec=target, lane_count=lane_count(ctx, job),
        clip_frames=settings.clip_frames, motion_frames=int(job.options.sampling.get("motion_frames", 0)),
        audio_context_sec=settings.audio_context_sec,
        track_count=job.options.speakers, channels_as_tracks=job.options.stereo_speakers,
        audio_type=job.options.audio_type,
    )
    if settings.min_lane_sec is not None:
        options.min_lane_sec = settings.min_lane_sec
    if settings.seam_fade_sec is not None:
        options.seam_fade_sec = settings.seam_fade_sec
    return options
