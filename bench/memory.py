"""Peak resident memory of the running process, as the benchmarks report it."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """The process's peak RSS in MB: VmHWM from /proc/self/status on Linux (what Lambda runs).

    Not ru_maxrss: Linux carries that over an exec from the process that forked the child, so a
    benchmark child started by a parent holding 180 MB would report at least 180 MB whatever it
    did itself. VmHWM belongs to the child's own address space. ru_maxrss where /proc is absent.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
