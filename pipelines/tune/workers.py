"""Several tuning workers on one machine: processes of `kapps tune` sharing one storage."""

import subprocess
import sys

from kapps.errors import KappsError


def run_workers(count, child_args, log=print):
    """Start `count` worker processes of `kapps tune` on one storage and wait for them."""
    procs = []
    for index in range(count):
        argv = [sys.executable, "-m", "pipelines.cli", "tune", *child_args]
        argv += ["--worker-index", str(index)]
        procs.append(subprocess.Popen(argv))
    log(f"started {count} workers: {', '.join(str(p.pid) for p in procs)}")
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    failed = [(i, c) for i, c in enumerate(codes) if c != 0]
    if failed:
        detail = ", ".join(f"worker {i} exited with status {c}" for i, c in failed)
        raise KappsError(f"{detail}; the study keeps every finished trial (re-run to resume)")
