#!/usr/bin/env bash
# `make test`: the shared test data first (with the niced rest beside it), then four pytest
# processes side by side — the real-daemon tests (marked e2e; they mostly wait on runs, three at
# once), the tests of the filled small graph (marked small_graph by conftest.py; each process
# works on its own copy of the shared fill) split in two: the step-edit tests of
# test_curation_steps.py and the others; and the rest, niced. Fails if any fails; the logs are
# printed at the end (and kept in .test-logs/).
set -u
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
base=${TMPDIR:-/tmp}/mm-tests
logs=.test-logs
mkdir -p "$base" "$logs"
# the data sets and the filled small graph the processes share: built first, while only the
# (niced) rest runs beside — built by the first process that needed them, the fill took ten
# minutes among the others instead of one and a half alone, and held two of them up
rm -rf "$base/shared"
export MM_TEST_SHARED="$base/shared"
nice -n 5 $py -m pytest -q -m "not e2e and not small_graph" --basetemp="$base/rest" --durations=20 \
    > "$logs/rest.log" 2>&1 &
rest_pid=$!
$py -c "import sys; sys.path.insert(0, 'tests'); import conftest; conftest.build_shared()" > "$logs/shared.log" 2>&1 \
    || { echo "building the shared test data failed:"; tail -50 "$logs/shared.log"; }

$py -m pytest -q -m e2e -n 3 --dist loadgroup -p no:cacheprovider --basetemp="$base/e2e" --durations=5 > "$logs/e2e.log" 2>&1 &
e2e=$!
$py -m pytest -q -m "small_graph and not e2e" -p no:cacheprovider --basetemp="$base/steps" --durations=10 \
    tests/test_curation_steps.py > "$logs/small_graph_steps.log" 2>&1 &
steps=$!
$py -m pytest -q -m "small_graph and not e2e" -p no:cacheprovider --basetemp="$base/graph" --durations=10 \
    --ignore=tests/test_curation_steps.py > "$logs/small_graph.log" 2>&1 &
graph=$!
wait $rest_pid; rest=$?
wait $steps; steps_status=$?
wait $graph; graph_status=$?
wait $e2e; e2e_status=$?
echo "--- the rest ---"; cat "$logs/rest.log"
echo "--- step edits on the filled small graph ---"; cat "$logs/small_graph_steps.log"
echo "--- other tests of the filled small graph ---"; cat "$logs/small_graph.log"
echo "--- end-to-end tests (real dagster dev) ---"; cat "$logs/e2e.log"
echo "exit status: rest $rest, step edits $steps_status, small graph $graph_status, end-to-end $e2e_status"
test $rest -eq 0 -a $steps_status -eq 0 -a $graph_status -eq 0 -a $e2e_status -eq 0
