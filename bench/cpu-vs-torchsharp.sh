#!/usr/bin/env bash
# Side-by-side CPU figures: FastWeights and TorchSharp-cpu (libtorch), alternating, several rounds,
# so both see the same machine load. Usage: bench/cpu-vs-torchsharp.sh gemm|delta|rnn [rounds] [hidden sizes]
# delta: B2 H4 T1024 D64 f32, ours recurrent and chunked (fwd, fwd+bwd); the peer's naive loop is fwd+bwd.
# rnn: LSTM and GRU, batch 16, T 128, one head, forward+backward (TorchSharp's nn.LSTM/GRU also runs
# the input projection and its gradients; ours is timed both without and with it, see docs/benchmarks.md).
# BASELINE=<git revision> (gemm, delta, rnn) also builds that revision in a temporary worktree and times it
# in each round beside this tree's build, so that a change and its baseline see the same machine load.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-gemm}; rounds=${2:-3}; hiddens=${3:-256,512}
# The shared folder sits beside the main checkout (../shared) or beside the worktrees' folder (../../shared).
peer=${PEER_RUN:-}
for d in ../shared ../../shared; do [ -z "$peer" ] && [ -x "$d/peers/torchsharp-cpu/run.sh" ] && peer=$d/peers/torchsharp-cpu/run.sh; done
[ -n "$peer" ] || { echo "TorchSharp peer (shared/peers/torchsharp-cpu/run.sh) not found; set PEER_RUN" >&2; exit 2; }
dotnet build Cli -c Release -v q >/dev/null
fw="dotnet Cli/bin/Release/net10.0/fastweights.dll"
base=""
if [ -n "${BASELINE:-}" ]; then
  tree=$(mktemp -d); trap 'git worktree remove --force "$tree" >/dev/null 2>&1 || true' EXIT
  git worktree add --detach "$tree" "$BASELINE" >/dev/null 2>&1
  dotnet build "$tree/Cli" -c Release -v q >/dev/null
  base="dotnet $tree/Cli/bin/Release/net10.0/fastweights.dll"
  echo "# baseline: $(git rev-parse --short "$BASELINE"); this tree: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo ' with uncommitted changes')"
fi
echo "# $(date -u +%F\ %T) $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
  case $what in
    gemm)
      $fw bench gemm --sizes 1024,2048 --backend cpu | grep -E '^gemm' | sed "s/^/round $r fastweights /"
      [ -z "$base" ] || $base bench gemm --sizes 1024,2048 --backend cpu | grep -E '^gemm' | sed "s/^/round $r baseline /"
      for n in 1024 2048; do echo "round $r torchsharp $($peer gemm $n)"; done ;;
    gemm-one-core)
      # Both on core 0 alone (one thread each), with our micro-kernel's own rate for scale.
      taskset -c 0 $fw bench gemm-kernel | grep -E '^gemm micro-kernel 512|^gemm micro-kernel 256' | head -1 | sed "s/^/round $r fastweights /"
      taskset -c 0 $fw bench gemm --sizes 1024,2048 --backend cpu | grep -E '^gemm' | sed "s/^/round $r fastweights /"
      for n in 1024 2048; do echo "round $r torchsharp $(taskset -c 0 $peer gemm $n)"; done ;;
    delta)
      $fw bench delta --shape 2,4,1024,64 --backend cpu | grep -E '^delta' | sed "s/^/round $r fastweights /"
      [ -z "$base" ] || $base bench delta --shape 2,4,1024,64 --backend cpu | grep -E '^delta' | sed "s/^/round $r baseline /"
      echo "round $r torchsharp $($peer delta 2 4 1024 64)" ;;
    rnn)
      for hid in ${hiddens//,/ }; do
        $fw bench rnn --backend cpu --cells lstm,gru --hidden "$hid" --heads 1 --batch 16 --steps 128 | grep -E '^(Lstm|Gru).*fwd\+bwd' | sed "s/^/round $r fastweights /"
        [ -z "$base" ] || $base bench rnn --backend cpu --cells lstm,gru --hidden "$hid" --heads 1 --batch 16 --steps 128 | grep -E '^(Lstm|Gru).*fwd\+bwd' | sed "s/^/round $r baseline /"
        for c in lstm gru; do echo "round $r torchsharp $($peer $c "$hid" 16 128)"; done
      done ;;
    *) echo "unknown case $what" >&2; exit 2 ;;
  esac
done
