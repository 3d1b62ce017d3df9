"""One `kapps tune` command: the study on this machine, alone or as several worker processes
sharing one storage."""

import subprocess
import sys
import time

from kapps.errors import ConfigError, KappsError
from pipelines.devices import cluster
from pipelines.prepare import prepare
from pipelines.tune.report import report
from pipelines.tune.study import open_study, optimize


def tune_competition(
    cfg, command_args, *, study_name, storage, out, workers, timeout, worker_index, log=print
):
    """Run `kapps tune` for `cfg`; `command_args` are the command's own (competition,
    overrides, --override files), which worker processes repeat.

    Returns `(session, report, seconds)`, or None in a worker process (`worker_index`).
    """
    if cluster(cfg.train)[1] > 1:
        raise ConfigError(
            "kapps tune runs one process per trial (--workers for several); "
            "several processes train one run with kapps run or kapps train"
        )
    child = worker_index is not None
    session = open_study(
        cfg, study_name, storage, out, worker_index=worker_index or 0, workers=workers
    )
    name = session.study.study_name
    if child:
        optimize(session, timeout, log=lambda line: log(f"[dim]w{worker_index}[/] {line}"))
        return None
    prepare(cfg, log=log)
    log(
        f"study {name!r} in {session.storage_url}: {cfg.tune.trials} trials, "
        f"{session.direction} {session.metric}"
    )
    start = time.perf_counter()
    if workers > 1:
        args = [*command_args, "--storage", session.storage_url, "--study-name", name]
        args += ["--out", str(session.folder.path)]
        args += ["--timeout", str(timeout)] if timeout else []
        run_workers(workers, args, log=log)
    else:
        optimize(session, timeout, log=log)
    return session, report(session), time.perf_counter() - start


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
