"""Benchmark registry: one lmms-eval-style module per benchmark, looked up by name."""

from mm_assets.evaluation.benchmarks import chartqa, countbench, docvqa, pixmo_points, realworldqa
from mm_assets.evaluation.benchmarks.base import Benchmark

BENCHMARKS: dict[str, Benchmark] = {
    m.BENCHMARK.name: m.BENCHMARK for m in (countbench, docvqa, chartqa, realworldqa, pixmo_points)
}


def get(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}") from None


__all__ = ["BENCHMARKS", "Benchmark", "get"]
