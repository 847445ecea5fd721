"""One chunk on several devices: guidance-parallel and Ulysses sequence-parallel sampling.

layout.py chooses how N devices share a step, groups.py creates the process groups, sequence.py
splits the DiT's tokens, runtime.py runs a clip's schedule on all ranks in lockstep, launch.py
starts the ranks inside the generator.
"""

from .launch import ParallelGroup, WorkerLostError, device_for
from .layout import MODES, LayoutError, ParallelLayout, choose_layout

__all__ = ["MODES", "LayoutError", "ParallelGroup", "ParallelLayout", "WorkerLostError", "choose_layout",
           "device_for"]
