#!/usr/bin/env bash
# `make test`: the real-daemon tests (marked e2e; they mostly wait on runs) in a second pytest
# process, three at once, beside the rest of the suite in the foreground. Fails if either fails;
# the end-to-end log is printed at the end (and kept in .test-logs/).
set -u
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
base=${TMPDIR:-/tmp}/mm-tests
logs=.test-logs
mkdir -p "$base" "$logs"

$py -m pytest -q -m e2e -n 3 -p no:cacheprovider --basetemp="$base/e2e" --durations=5 > "$logs/e2e.log" 2>&1 &
e2e=$!
$py -m pytest -q -m "not e2e" --basetemp="$base/rest" --durations=20
rest=$?
wait $e2e; e2e_status=$?
echo "--- end-to-end tests (real dagster dev) ---"; cat "$logs/e2e.log"
echo "exit status: rest $rest, end-to-end $e2e_status"
test $rest -eq 0 -a $e2e_status -eq 0
