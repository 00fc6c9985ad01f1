#!/usr/bin/env bash
# The client-version matrix of `make test`: the full suite with the pinned client (.venv, dataiku-api-client 15.x),
# then the DSS-facing suites once per old client (.venv-dss<major>, built by the Makefile), then one summary line
# per client. Every run goes to its end even when an earlier one failed; the exit status is 1 if any failed.
# usage: dev/test_matrix.sh <main python or ""> "<dss-facing test files>" <major>... -- [pytest args]
set -uo pipefail
main_py="$1"; dss_tests="$2"; shift 2
majors=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do majors+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
summary=()
status=0

client_version() {
    "$1" -c "from importlib.metadata import version; print(version('dataiku-api-client'))"
}

run() {  # run <python> <label> <pytest args...>
    local py="$1" label="$2"; shift 2
    local version; version="$(client_version "$py")"
    echo "== dataiku-api-client $version: $label"
    local start=$SECONDS
    if PT_EXPECT_CLIENT="$version" "$py" -m pytest "$@"; then
        summary+=("dataiku-api-client $version: PASSED ($label, $((SECONDS - start)) s)")
    else
        summary+=("dataiku-api-client $version: FAILED ($label, $((SECONDS - start)) s)")
        status=1
    fi
}

if [ -n "$main_py" ]; then
    run "$main_py" "full suite" "$@"
fi
for major in "${majors[@]}"; do
    # shellcheck disable=SC2086 - the list of test files is meant to split
    run ".venv-dss$major/bin/python" "DSS-facing suites" $dss_tests -p no:cacheprovider "$@"
done
echo
echo "== client-version matrix"
printf '%s\n' "${summary[@]}"
exit $status
