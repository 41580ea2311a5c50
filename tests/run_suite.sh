#!/usr/bin/env bash
# `make test`: four pytest processes side by side — the real-daemon tests (marked e2e; they
# mostly wait on runs, three at once), the tests of the filled small graph (marked small_graph by
# conftest.py; the graph takes minutes to fill and is built once per process) split in two: the
# step-edit tests of test_curation_steps.py and the others; and the rest in the foreground. One
# process kept 2 cores about half busy, and the graph's tests in one process were the longest
# path (17.7 of 17.9 minutes). Fails if any fails; the logs of the background processes are
# printed at the end (and kept in .test-logs/).
set -u
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
base=${TMPDIR:-/tmp}/mm-tests
logs=.test-logs
mkdir -p "$base" "$logs"
# the small data and the filled small graph: built once, by the first process that needs them
rm -rf "$base/shared"
export MM_TEST_SHARED="$base/shared"

$py -m pytest -q -m e2e -n 3 --dist loadgroup -p no:cacheprovider --basetemp="$base/e2e" --durations=5 > "$logs/e2e.log" 2>&1 &
e2e=$!
$py -m pytest -q -m "small_graph and not e2e" -p no:cacheprovider --basetemp="$base/steps" --durations=10 \
    tests/test_curation_steps.py > "$logs/small_graph_steps.log" 2>&1 &
steps=$!
$py -m pytest -q -m "small_graph and not e2e" -p no:cacheprovider --basetemp="$base/graph" --durations=10 \
    --ignore=tests/test_curation_steps.py > "$logs/small_graph.log" 2>&1 &
graph=$!
# the rest at a lower priority: it has minutes to spare, the small graph's processes are the longest path
nice -n 5 $py -m pytest -q -m "not e2e and not small_graph" --basetemp="$base/rest" --durations=20
rest=$?
wait $steps; steps_status=$?
wait $graph; graph_status=$?
wait $e2e; e2e_status=$?
echo "--- step edits on the filled small graph ---"; cat "$logs/small_graph_steps.log"
echo "--- other tests of the filled small graph ---"; cat "$logs/small_graph.log"
echo "--- end-to-end tests (real dagster dev) ---"; cat "$logs/e2e.log"
echo "exit status: rest $rest, step edits $steps_status, small graph $graph_status, end-to-end $e2e_status"
test $rest -eq 0 -a $steps_status -eq 0 -a $graph_status -eq 0 -a $e2e_status -eq 0
