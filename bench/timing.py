"""Best-of-N wall and CPU time of a callable: shared by the speed benches (standard library only, so the
throwaway TensorFlow environment of bench/tools/make_musicnn_reference.py can import it too)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(min wall s, min CPU s) over ``repeats`` runs after one warm-up run (caches filled, kernels generated)."""
    run()
    wall, cpu = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return min(wall), min(cpu)
