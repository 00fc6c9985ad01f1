#!/usr/bin/env bash
# The client-version matrix of `make test`: the full suite with the pinned client (.venv, dataiku-api-client 15.x),
# then the DSS-facing suites once per old client (.venv-dss<major>, built by the Makefile), side by side (most of
# their time is spent waiting on loopback HTTP and simulated delays; each run has its own temporary directory and
# log), then one summary line per client. Every run goes to its end even when another failed; the exit status is
# 1 if any failed. MATRIX_PARALLEL=0 runs the old clients one after the other.
# usage: dev/test_matrix.sh <main python or ""> "<dss-facing test files>" <major>... -- [pytest args]
set -uo pipefail
main_py="$1"; dss_tests="$2"; shift 2
majors=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do majors+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
logs="$(mktemp -d "${TMPDIR:-/tmp}/process-tracker-matrix.XXXXXX")"
chmod 0755 "$logs"  # the fleet runs a process as another unix user: it must reach its files under the temp dir
status=0

client_version() {
    "$1" -c "from importlib.metadata import version; print(version('dataiku-api-client'))"
}

run() {  # run <python> <label> <own temp dir: 0|1> <pytest args...>: prints the pytest output and records
    local py="$1" label="$2" own_tmp="$3"; shift 3  # "<version> <rc> <seconds> <label>" for the summary
    local version start rc tmp="${TMPDIR:-/tmp}"
    version="$(client_version "$py")"
    if [ "$own_tmp" = "1" ]; then
        tmp="$(mktemp -d "$logs/tmp.XXXXXX")" && chmod 0755 "$tmp"
    fi
    start=$SECONDS
    echo "== dataiku-api-client $version: $label"
    TMPDIR="$tmp" PT_EXPECT_CLIENT="$version" "$py" -m pytest "$@"
    rc=$?
    echo "$version $rc $((SECONDS - start)) $label" > "$logs/result.$version"
    [ "$own_tmp" = "1" ] && rm -rf "$tmp"
    return $rc
}

if [ -n "$main_py" ]; then
    run "$main_py" "full suite" 0 "$@" || status=1
fi
for major in "${majors[@]}"; do
    # shellcheck disable=SC2086 - the list of test files is meant to split
    if [ "${MATRIX_PARALLEL:-1}" = "1" ]; then
        run ".venv-dss$major/bin/python" "DSS-facing suites" 1 $dss_tests -p no:cacheprovider "$@" \
            > "$logs/out.$major" 2>&1 &
    else
        run ".venv-dss$major/bin/python" "DSS-facing suites" 0 $dss_tests -p no:cacheprovider "$@" || status=1
    fi
done
wait
for major in "${majors[@]}"; do
    [ -f "$logs/out.$major" ] && cat "$logs/out.$major"
done
echo
echo "== client-version matrix"
for result in "$logs"/result.*; do
    read -r version rc seconds label < "$result"
    if [ "$rc" = "0" ]; then word=PASSED; else word=FAILED; status=1; fi
    echo "dataiku-api-client $version: $word ($label, $seconds s)"
done
rm -rf "$logs"
exit $status
