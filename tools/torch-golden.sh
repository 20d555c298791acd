#!/usr/bin/env bash
# Rewrites tests/Models.Tests/Golden/{lstm,gru}.json from PyTorch's nn.LSTM / nn.GRU (libtorch through
# TorchSharp-cpu, tools/torch-golden). TorchSharp 0.107's native library needs a newer glibc than
# Debian 12 has, so this runs it the way ../shared/peers/torchsharp-cpu/run.sh runs the CPU peer:
# under Debian 13's glibc and libstdc++ in that script's private folder (PEER_ROOT), which the
# script sets up on its first call. Only needed to regenerate the files; the tests read them.
set -euo pipefail
cd "$(dirname "$0")/.."
peer=${PEER_RUN:-}
for d in ../shared ../../shared; do [ -z "$peer" ] && [ -x "$d/peers/torchsharp-cpu/run.sh" ] && peer=$d/peers/torchsharp-cpu/run.sh; done
[ -n "$peer" ] || { echo "TorchSharp peer (shared/peers/torchsharp-cpu/run.sh) not found; set PEER_RUN" >&2; exit 2; }
"$peer" gemm 8 >/dev/null                                  # sets up the private glibc and dotnet host once
root=${PEER_ROOT:-/opt/fastweights-peer}
out=$(mktemp -d)
dotnet build tools/torch-golden/TorchGolden.csproj -c Release -o "$out" -v q >/dev/null
env LD_LIBRARY_PATH="$root/root/usr/lib/x86_64-linux-gnu" "$root/dotnet/dotnet" "$out/TorchGolden.dll" tests/Models.Tests/Golden
rm -rf "$out"
