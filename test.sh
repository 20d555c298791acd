#!/usr/bin/env bash
# The test command: installs lavapipe (Mesa's CPU Vulkan driver) when no Vulkan driver is present,
# then runs every test except those that need tensor cores (category TensorCores, run on a GPU
# host: see docs/gpu.md). Extra arguments go to dotnet test.
set -euo pipefail
cd "$(dirname "$0")"
if ! ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1; then
  tools/install-lavapipe.sh
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
dotnet test FastWeights.sln -c Release --filter "TestCategory!=TensorCores" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(sed -n 's/^ *succeeded: *\([0-9]*\).*/\1/p' "$log" | tail -1)
failed=$(sed -n 's/^ *failed: *\([0-9]*\).*/\1/p' "$log" | tail -1)
skipped=$(sed -n 's/^ *skipped: *\([0-9]*\).*/\1/p' "$log" | tail -1)
passed=${passed:-0}; failed=${failed:-0}; skipped=${skipped:-0}
if [ "$skipped" != 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"; else echo "$passed passed, $failed failed"; fi
if [ "$status" = 0 ] && [ "$passed" = 0 ]; then echo "test.sh: no test ran" >&2; exit 1; fi
exit "$status"
