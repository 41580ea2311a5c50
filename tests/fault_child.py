"""A run process for the fault-injection tests: opens a copy of the small graph's home and runs
one job partition in it, as a run worker does. Usage: HOME_DIR DATA_DIR BUDGET JOB [PARTITION]
(a multi-partition key as `dim=key,dim=key`)."""

import sys
from pathlib import Path

import dagster as dg
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curation_graph import open_graph, small_graph_resources  # noqa: E402


def partition_key(text: str):
    if not text:
        return None
    if "=" in text:
        return dg.MultiPartitionKey(dict(part.split("=", 1) for part in text.split(",")))
    return text


if __name__ == "__main__":
    home, data, budget, job = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)        # as the test's own runs: the same floats, bit for bit
    g = open_graph(home, data, **small_graph_resources(home, budget))
    print("READY", flush=True)
    g.run(job, partition_key(sys.argv[5] if len(sys.argv) > 5 else ""))
    print("DONE", flush=True)
