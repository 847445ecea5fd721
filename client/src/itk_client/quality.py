"""The quality report in a terminal: `itk quality VIDEO AUDIO` (computed here) and the report a
job carries (`itk status JOB`). Reports are the JSON of the QualityReport message either way.

Computing one needs the face models: `pip install 'itk-client[quality]'` (itk-common's `quality`
extra: dlib, face-recognition-models, scikit-image). Showing a job's report needs nothing more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

NOT_INSTALLED = ("itk quality computes the report here and needs the face models: "
                 "pip install 'itk-client[quality]' (or read a job's report with `itk status JOB`)")


class QualityUnavailableError(RuntimeError):
    pass


def compute(video: Path, audio: Path, portrait: Path | None) -> dict[str, Any]:
    """The report of any video against any recording (and portrait), as JSON."""
    try:
        from itk_common.quality.assess import assess
        from itk_common.quality.faces import FaceModelsMissingError
        from itk_common.quality.media import MediaError
        from itk_common.quality.report import report_json
    except ImportError as exc:
        raise QualityUnavailableError(NOT_INSTALLED) from exc
    try:
        report = assess(video, audio=audio, reference=portrait.read_bytes() if portrait else None)
    except FaceModelsMissingError as exc:
        raise QualityUnavailableError(str(exc)) from exc
    except MediaError as exc:
        raise ValueError(str(exc)) from exc
    return report_json(report)


def _figure(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def headline(report: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None, title="quality")
    if report.get("state") != "ready":
        table.add_row("state", str(report.get("state")) + (f": {report['error']}" if report.get("error") else ""))
        return table
    lag = report.get("sync_lag_frames")
    rows = [
        ("lip sync", f"lag {_figure(lag)} frames, correlation {_figure(report.get('sync_correlation'))}"),
        ("identity", f"distance {_figure(report.get('identity_distance'))} to the {report.get('reference')} "
                     f"(same person < 0.6), trend {_figure(report.get('identity_trend_per_min'), 3)}/min"),
        ("colour", f"face ΔE2000 {_figure(report.get('face_colour_delta_e'))} (trend "
                   f"{_figure(report.get('face_colour_trend_per_min'))}/min), "
                   f"frame ΔE2000 {_figure(report.get('frame_colour_delta_e'))}"),
        ("frame steps", f"in-lane p99 {_figure(report.get('step_p99'))}, largest at a seam "
                        f"{_figure(report.get('max_seam_step'))}, at a piece boundary "
                        f"{_figure(report.get('max_boundary_step'))}"),
        ("durations", f"video {_figure(report.get('video_duration_sec'), 3)} s, audio "
                      f"{_figure(report.get('audio_duration_sec'), 3)} s"),
        ("faces found", f"{100 * float(report.get('face_share', 0)):.0f}% of frames"),
        ("computed in", f"{_figure(report.get('compute_sec'), 1)} s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def segments(report: dict[str, Any]) -> Table:
    table = Table("from", "to", "lag", "corr", "signal", "identity", "face ΔE", "frame ΔE", "max step",
                  title="per segment")
    for segment in report.get("segments", []):
        table.add_row(_figure(segment.get("start_sec"), 1), _figure(segment.get("end_sec"), 1),
                      _figure(segment.get("sync_lag_frames")), _figure(segment.get("sync_correlation")),
                      segment.get("sync_signal") or "-", _figure(segment.get("identity_distance")),
                      _figure(segment.get("face_colour_delta_e")), _figure(segment.get("frame_colour_delta_e")),
                      _figure(segment.get("max_step")))
    return table
