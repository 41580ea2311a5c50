#!/usr/bin/env bash
# `make test`: the suite as three pytest processes side by side, because most of its time is
# waiting (on daemons, on run processes), not CPU:
#   - the real-daemon tests (marked e2e), one per worker;
#   - the tests on the trained small graph (marked small_graph: its fixture is built once, there);
#   - everything else, in the foreground.
# Fails if any of them fails; the two background logs are printed at the end.
set -u
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
base=${TMPDIR:-/tmp}/mm-tests
logs=.test-logs
mkdir -p "$base" "$logs"

$py -m pytest -q -m e2e -n 3 -p no:cacheprovider --basetemp="$base/e2e" --durations=5 > "$logs/e2e.log" 2>&1 &
e2e=$!
$py -m pytest -q -m "small_graph and not e2e" -p no:cacheprovider --basetemp="$base/small_graph" \
    --durations=10 > "$logs/small_graph.log" 2>&1 &
small=$!
$py -m pytest -q -m "not e2e and not small_graph" --basetemp="$base/rest" --durations=10
rest=$?
wait $small; small_status=$?
wait $e2e; e2e_status=$?
echo "--- tests on the trained small graph ---"; cat "$logs/small_graph.log"
echo "--- end-to-end tests (real dagster dev) ---"; cat "$logs/e2e.log"
echo "exit status: rest $rest, small graph $small_status, end-to-end $e2e_status"
test $rest -eq 0 -a $small_status -eq 0 -a $e2e_status -eq 0
