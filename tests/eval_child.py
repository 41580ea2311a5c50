"""Run one `eval_job` partition in this process against the instance at DAGSTER_HOME, with the
code location's resources from the environment — what a run worker launched by the daemon does."""

import sys

import dagster as dg

if __name__ == "__main__":
    from mm_assets.definitions import build_definitions

    checkpoint, benchmark = sys.argv[1], sys.argv[2]
    result = build_definitions().resolve_job_def("eval_job").execute_in_process(
        instance=dg.DagsterInstance.get(),
        partition_key=dg.MultiPartitionKey({"checkpoint": checkpoint, "benchmark": benchmark}),
        raise_on_error=False)
    sys.exit(0 if result.success else 1)
