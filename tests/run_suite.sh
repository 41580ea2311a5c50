#!/usr/bin/env bash
# `make test`: the shared test data first (with the rest beside it), then five pytest processes
# side by side — the real-server tests (marked e2e) in two lanes, the tests of the filled small
# graph (marked small_graph by conftest.py; each process works on its own copy of the shared fill)
# split in two: the step-edit tests of test_curation_steps.py and the others; and the rest. Fails
# if any fails; the logs are printed at the end (and kept in .test-logs/). Each process is tagged
# with MM_SUITE_PART, so a profiler can tell whose CPU time a process (or its children) used.
set -u
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
base=${TMPDIR:-/tmp}/mm-tests
logs=.test-logs
mkdir -p "$base" "$logs"
# what the processes share is built first, while only the rest runs beside: built by the
# first process that needed it, the fill took ten minutes among the others instead of one and a
# half alone, and held two of them up (the end-to-end tests need only the data sets, but started
# after those, their own fills held the shared one up just as much)
rm -rf "$base/shared"
export MM_TEST_SHARED="$base/shared"
# The batch processes (the rest, the two small-graph ones) run at a lower priority than the
# end-to-end lanes: their tests only have hang bounds, while the real-server tests wait on daemons,
# sensors and run workers that must get the CPU in time (starved, a sensor's ten evaluations took
# over 15 minutes in CI). The batch tests' bounds are sized for that (pyproject.toml's timeout,
# conftest's for the small graph).
batch="nice -n 5"
MM_SUITE_PART=rest OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $batch $py -m pytest -q -m "not e2e and not small_graph and not graph_lane" --basetemp="$base/rest" --durations=20 \
    > "$logs/rest.log" 2>&1 &
rest_pid=$!
build_shared() {
    local start=$SECONDS
    MM_SUITE_PART=shared_$1 $py -c "import sys; sys.path.insert(0, 'tests'); import conftest; conftest.build_shared('$1')" >> "$logs/shared.log" 2>&1 \
        || { echo "building the shared test data ($1) failed:"; tail -50 "$logs/shared.log"; }
    echo "shared $1: $((SECONDS - start)) s" >> "$logs/shared.log"
}
build_shared data
build_shared fill
# from here on five processes share two cores: one intra-op thread each (torch's two threads only
# wait on each other when the cores are taken)
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# The end-to-end lanes, fixed rather than left to pytest-xdist (its scheduler queued two more tests
# behind the longest one from the start). Two, not three: a third `dagster dev` beside the others
# (each daemon ticks whether or not it gets the CPU) and three batch processes left every process
# so little of the two cores that a module's fixture and runs waiting to start hit their timeouts.
# Balanced on their time in a suite run: the recipe flow (≈540 s) with the Ray tests (≈190) and
# the backfill (≈120); the checkpoint sensor (≈410) and the S3 graph (≈250) with the browser
# (≈160). (With the backfill in the second lane that lane ended last, 170 s after the first.)
e2e_lane() {
    local name=$1; shift
    MM_SUITE_PART=e2e_$name $py -m pytest -q -m e2e -p no:cacheprovider --basetemp="$base/e2e_$name" --durations=5 "$@" \
        > "$logs/e2e_$name.log" 2>&1 &
    e2e_pids+=($!)
    lanes+=("$name")
}
e2e_pids=()
lanes=()
e2e_lane recipe_flow_ray_and_backfill tests/test_recipe_flow_e2e.py tests/test_ray_shards.py \
    tests/test_benchmarks_quick.py tests/test_backfill_e2e.py
e2e_lane sensors_s3_and_ui --ignore=tests/test_recipe_flow_e2e.py --ignore=tests/test_ray_shards.py \
    --ignore=tests/test_benchmarks_quick.py --ignore=tests/test_backfill_e2e.py
MM_SUITE_PART=steps $batch $py -m pytest -q -m "small_graph and not e2e" -p no:cacheprovider --basetemp="$base/steps" --durations=10 \
    tests/test_curation_steps.py > "$logs/small_graph_steps.log" 2>&1 &
steps=$!
# with the tests that build a graph of their own (marked graph_lane; ≈ 7 core-minutes): the rest
# took 19 of the 20 minutes alone, this lane about 10
MM_SUITE_PART=graph $batch $py -m pytest -q -m "(small_graph or graph_lane) and not e2e" -p no:cacheprovider --basetemp="$base/graph" --durations=10 \
    --ignore=tests/test_curation_steps.py > "$logs/small_graph.log" 2>&1 &
graph=$!
wait $rest_pid; rest=$?
wait $steps; steps_status=$?
wait $graph; graph_status=$?
e2e_status=0
for pid in "${e2e_pids[@]}"; do wait "$pid" || e2e_status=1; done
echo "--- shared test data ---"; grep "^shared " "$logs/shared.log"
echo "--- the rest ---"; cat "$logs/rest.log"
echo "--- step edits on the filled small graph ---"; cat "$logs/small_graph_steps.log"
echo "--- other tests of the filled small graph ---"; cat "$logs/small_graph.log"
for name in "${lanes[@]}"; do echo "--- end-to-end tests: $name (real servers) ---"; cat "$logs/e2e_$name.log"; done
echo "exit status: rest $rest, step edits $steps_status, small graph $graph_status, end-to-end $e2e_status"
test $rest -eq 0 -a $steps_status -eq 0 -a $graph_status -eq 0 -a $e2e_status -eq 0
