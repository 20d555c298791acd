#!/usr/bin/env bash
# Side-by-side CPU figures: FastWeights and TorchSharp-cpu (libtorch), alternating, several rounds,
# so both see the same machine load. Usage: bench/cpu-vs-torchsharp.sh gemm|delta [rounds]
# (PEER=path/to/run.sh when ../shared is elsewhere, e.g. from a worktree)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-gemm}; rounds=${2:-3}
peer=${PEER:-../shared/peers/torchsharp-cpu/run.sh}
dotnet build Cli -c Release -v q >/dev/null
fw="dotnet Cli/bin/Release/net10.0/fastweights.dll"
echo "# $(date -u +%F\ %T) $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
  case $what in
    gemm)
      $fw bench gemm --sizes 1024,2048 --backend cpu | grep -E '^gemm' | sed "s/^/round $r fastweights /"
      for n in 1024 2048; do echo "round $r torchsharp $($peer gemm $n)"; done ;;
    delta)
      # B2 H4 T1024 D64 f32: ours recurrent and chunked (fwd, fwd+bwd); the peer's naive loop is fwd+bwd
      $fw bench delta --shape 2,4,1024,64 --backend cpu | grep -E '^delta' | sed "s/^/round $r fastweights /"
      echo "round $r torchsharp $($peer delta 2 4 1024 64)" ;;
    *) echo "unknown case $what" >&2; exit 2 ;;
  esac
done
