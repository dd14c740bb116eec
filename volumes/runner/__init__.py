"""Job execution: run one job's script as a subprocess with its volumes mounted.

`run_script` (process.py) is the entry point; `Mount` (mounts.py) describes one volume. The
language conventions are in wrappers.py, the nsjail sandbox in sandbox.py. Nothing here imports
Django or the volume engine; `job.py` ties the runner to leases and sync, and `run.py` is a worker's
entry for one queued job (claim, prepare through services.jobs, execute, report).
"""
from .mounts import Mount
from .process import RunResult, run_script

__all__ = ["Mount", "RunResult", "run_script"]
