#!/usr/bin/env bash
# `make test`: the shared test data first (with the niced rest beside it), then six pytest
# processes side by side — the real-server tests (marked e2e; they mostly wait on runs) in three
# lanes, the tests of the filled small graph (marked small_graph by conftest.py; each process
# works on its own copy of the shared fill) split in two: the step-edit tests of
# test_curation_steps.py and the others; and the rest, niced. Fails if any fails; the logs are
# printed at the end (and kept in .test-logs/).
set -u
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
base=${TMPDIR:-/tmp}/mm-tests
logs=.test-logs
mkdir -p "$base" "$logs"
# what the processes share is built first, while only the (niced) rest runs beside: built by the
# first process that needed it, the fill took ten minutes among the others instead of one and a
# half alone, and held two of them up (the end-to-end tests need only the data sets, but started
# after those, their own fills held the shared one up just as much)
rm -rf "$base/shared"
export MM_TEST_SHARED="$base/shared"
nice -n 5 $py -m pytest -q -m "not e2e and not small_graph" --basetemp="$base/rest" --durations=20 \
    > "$logs/rest.log" 2>&1 &
rest_pid=$!
build_shared() {
    local start=$SECONDS
    $py -c "import sys; sys.path.insert(0, 'tests'); import conftest; conftest.build_shared('$1')" >> "$logs/shared.log" 2>&1 \
        || { echo "building the shared test data ($1) failed:"; tail -50 "$logs/shared.log"; }
    echo "shared $1: $((SECONDS - start)) s" >> "$logs/shared.log"
}
build_shared data
build_shared fill
# The end-to-end lanes, fixed rather than left to pytest-xdist: its scheduler hands each worker
# three tests up front, so the longest test (the recipe flow, twelve minutes in CI) ran with two
# more queued behind it on its worker. CI's times: the recipe flow 735 s; S3 475 + checkpoint
# sensor 198; the others (browser 257, backfill 142, Ray ≈ 360) — new e2e tests land there.
e2e_lane() {
    local name=$1; shift
    $py -m pytest -q -m e2e -p no:cacheprovider --basetemp="$base/e2e_$name" --durations=5 "$@" \
        > "$logs/e2e_$name.log" 2>&1 &
    e2e_pids+=($!)
    lanes+=("$name")
}
e2e_pids=()
lanes=()
e2e_lane recipe_flow tests/test_recipe_flow_e2e.py
e2e_lane s3_and_sensor tests/test_graph_on_s3.py tests/test_checkpoint_sensor_e2e.py
e2e_lane others --ignore=tests/test_recipe_flow_e2e.py --ignore=tests/test_graph_on_s3.py \
    --ignore=tests/test_checkpoint_sensor_e2e.py
$py -m pytest -q -m "small_graph and not e2e" -p no:cacheprovider --basetemp="$base/steps" --durations=10 \
    tests/test_curation_steps.py > "$logs/small_graph_steps.log" 2>&1 &
steps=$!
$py -m pytest -q -m "small_graph and not e2e" -p no:cacheprovider --basetemp="$base/graph" --durations=10 \
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
