"""Running one job: its lifecycle, lane planning, the split, the piece scheduler, the stitch.

lifecycle.py  the runner thread: the steps in order, the deadline, the end, the clean-up
lanes.py      how many lanes a job is planned as, and what the splitter is asked
split.py      streaming the upload to the splitter, handing each piece on as it is cut
pieces.py     each lane's pieces rendered in order on the pool, and the piece retry policy
stitch.py     finished parts streamed to the stitcher, and its retry policy
context.py    what the steps share: the job, the backends, the settings, how a job ends
"""

from itk_gateway.jobs.runner.context import Backends, JobEndedError, RunSettings
from itk_gateway.jobs.runner.lifecycle import JobRunner

__all__ = ["Backends", "JobEndedError", "JobRunner", "RunSettings"]
