#!/usr/bin/env bash
# The test command: installs lavapipe (Mesa's CPU Vulkan driver) when no Vulkan driver is present,
# then runs every test except those that need tensor cores (category TensorCores) or workgroups
# that run side by side (category ConcurrentWorkgroups), which run on a GPU host (docs/gpu.md);
# writes TRX reports to TestResults/ and ends with one line 'N passed, N failed[, N skipped]'.
# Extra arguments go to dotnet test. Exits with dotnet test's status, and non-zero when no test ran.
# The tests run on Microsoft.Testing.Platform (global.json), where the TRX report is --report-trx:
# VSTest's '--logger trx' is rejected there ("Unknown option '--logger'").
set -euo pipefail
cd "$(dirname "$0")"
if ! ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1; then
  tools/install-lavapipe.sh || echo "test.sh: no Vulkan driver could be installed; the Vulkan tests will report it" >&2
fi

results=TestResults
mkdir -p "$results"
marker=$(mktemp "$results/.run-XXXXXX")
trap 'rm -f "$marker"' EXIT
set +e
dotnet test FastWeights.sln -c Release --filter "TestCategory!=TensorCores&TestCategory!=ConcurrentWorkgroups" \
  --report-trx --results-directory "$results" "$@"
status=$?
set -e

# Sum the counters of the TRX files this run wrote.
mapfile -t trx < <(find "$results" -name '*.trx' -newer "$marker" 2>/dev/null)
passed=0 failed=0 skipped=0
if [ ${#trx[@]} -gt 0 ]; then
  # <Counters total=".." passed=".." failed=".." .../> in each file (grep/sed: no python needed)
  attr() { sed -n "s/.*<Counters [^>]*\\b$1=\"\\([0-9]*\\)\".*/\\1/p" "$2" | sed -n 1p; }
  for f in "${trx[@]}"; do
    passed=$((passed + $(attr passed "$f") + 0))
    failed=$((failed + $(attr failed "$f") + $(attr error "$f") + $(attr timeout "$f") + $(attr aborted "$f") + 0))
    skipped=$((skipped + $(attr notExecuted "$f") + $(attr inconclusive "$f") + 0))
  done
fi
if [ "$skipped" != 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
if [ "$status" = 0 ] && [ "$failed" != 0 ]; then status=1; fi
if [ "$status" = 0 ] && [ $((passed + failed)) = 0 ]; then echo "test.sh: no test ran" >&2; status=1; fi
exit "$status"
