#!/usr/bin/env bash
# gpu-host.sh <section>...: runs on a bare Linux GPU host (root, no .NET, no internet) from the root
# of a working tree that carries .gl/ and .bundle/ (tools/gpu-bundle.sh) and, for the peers, .peers/
# (flash-linear-attention's fla folder). Prepares the host once (Vulkan loader, the NVIDIA ICD,
# the unpacked bundle), then runs each section in turn, printing '## <section>' before each, so one
# device call's output is one record for bench/results/. Sections:
#   devices            fastweights devices
#   tests              every Engine.Tests test (tensor-core ones included); on an H100 host this takes longer
#                      than one 600 s device call (run 54 reached 1085 of 1097), so split it there:
#   tests-a, tests-b   the same in two halves by class: tests-a the classes Cpu* to LinearAttention*
#                      (CPU kernels, delta rule, feature maps, GEMM, linear attention), tests-b the rest
#                      (pointwise, recurrent cells, scan, tensor-core GEMM, Vulkan backend)
#   tensorcores        Engine.Tests --filter TestCategory=TensorCores|TestCategory=ConcurrentWorkgroups
#                      Every test section prints each test's result as it ends (--output detailed), so a
#                      call cut by its limit still shows what passed; pipe the output through
#                      `grep --line-buffered` (or write it straight to $OUT), or the cut loses it (run 118).
#   gemm               fastweights bench gemm 4096,8192 on Vulkan, every dtype, every cm2 tile
#   torch-gemm         cuBLAS at 4096 and 8192 (bench/peers/torch_gemm.py)
#   delta              fastweights bench delta on Vulkan at the issue's shapes (recurrent and chunked)
#   fla                flash-linear-attention chunk/fused delta rule at the same shapes
#   fla-chunk          flash-linear-attention chunk_delta_rule alone at #3's four shapes (no fused recurrent kernel)
#   delta-gated        fastweights bench delta, gated rule, bf16 chunked, B8 H16 D128 at T2048 and T8192
#   delta-half         the delta rule at #3's shapes with o, dO, dq, dk, dv bf16 (--outputs bf16), as FLA keeps them
#   delta-half-profile the same with FASTWEIGHTS_PROFILE=1
#   delta-gated-compact the gated rule (bf16, B8 H16 D128) profiled with f32 intermediates, then bf16 (the experiment's default)
#   delta-gated-fragments the gated rule (bf16, B8 H16 D128, T2048 and T8192) profiled with its stage 1, q, k
#                      gradients and WY backward on the tile kernels, each of the three back on the tile kernel
#                      alone, and all three on fragments (the default)
#   rnn                fastweights bench rnn on Vulkan (hidden 768/1024, 1 and 4+ heads)
#   cudnn              cuDNN nn.LSTM/nn.GRU at hidden 768 and 1024 (bench/peers/torch_rnn.py)
#   flashrnn           FlashRNN's CUDA kernels at the same shapes (.peers/flashrnn, built there)
#   step, scan         the decoding step and the scan benches
#   torch-copy         a 1 GiB device-to-device copy through torch (the scan's memory floor)
#   gemm-best          the cm2 128x128x64 tile (128x256x64 before run 132), bf16 and f16, each in a process of its own
#   gemm-tiles         each cm2 tile in a process of its own (bf16 and f16, 4096 and 8192)
#   rnn-persistent     rnn-bf16's per-step cases (1 and 4 heads) one dispatch per step, then all steps in one
#   rnn-bf16           fastweights bench rnn with the projection GEMMs in bf16 (1, 4 and 8 heads)
#   rnn-units          LSTM and GRU 1024, one head, profiled: one dispatch per step with 4, 8 and 16 units per
#                      workgroup, then the automatic plan with 16
#   rnn-regs           rnn-persistent's cases with R read from L2 every step (FASTWEIGHTS_RNN_WEIGHT_REGS=0), kept in
#                      registers (the default), and persistent in both directions; then LSTM/GRU 1024 profiled with
#                      their pipelines' registers
#   rnn-rows           one head of LSTM/GRU 768 and 1024: the one-dispatch-per-step backward staging dq
#                      (FASTWEIGHTS_RNN_ROW_PARTIALS=0) against row partials (=1, also with 8 units), then profiled
#   rnn-chunk64        LSTM 768, one head, with the per-step kernels' staging capped at 64 columns
#   delta-one, fla-one the delta rule at B8 H16 T2048 D64 only (ours bf16 and f32 chunked; FLA)
#   delta-profile      the chunked delta rule (bf16, f32) at B8 H16 T2048 D64 with FASTWEIGHTS_PROFILE=1
#   rnn-profile        LSTM 768/1024, 1 and 4 heads, with FASTWEIGHTS_PROFILE=1 (per-kernel GPU time)
#   gemm-sweep         bf16 4096/8192: cm2 tiles 128x256 (BK 32, 64), 128x128x64, rasterisation groups of 0 and 8 rows
#   pipeline-stats     the driver's pipeline statistics (FASTWEIGHTS_PIPELINE_STATS=1) of the chunked delta
#                      rule (D64, D128, with its per-kernel profile) and the LSTM 768 cells (1, 4, 8 heads)
#   gemm-invocations   bf16 4096/8192: cm2 tiles 128x256x64, 128x128x64, 128x128x32 at 256 and 128 invocations
#   gemm-cm2-128       the 128x128 tiles at 128 invocations: bf16 and f16 BK 64, bf16 BK 16, groups of 4 and 16 rows
#   gemm-128           bf16 and f16 4096/8192 with each tile at its default workgroup size: auto, 128x128x64, 128x256x64 (run 132 also had 128x128x128, since dropped)
#   gemm-repeat        one cm2 tile (bf16 128x256x32) at 4096 and 8192, five times in a row
#   gemm-staged        bf16 and f16 4096/8192: the driver-staged cm2 128x128x64 tile, then the kernel that stages
#                      its own operands (gemm_coopmat2_staged.comp) reading its blocks with coopMatLoad
#                      (FASTWEIGHTS_GEMM_CM2_STAGED=1) on 128 and 256 invocations and with coopMatLoadTensorNV
#                      (=tensor) on 128, with pipeline statistics (registers, shared memory)
#   delta-order        the chunked delta rule at B8 H16 T2048 D64, f32 then bf16, twice
#   delta-state        the chunked delta rule (bf16) with each state pass (FASTWEIGHTS_DELTA_STATE=sequential,
#                      tiles): per-kernel profile and pipeline statistics at T2048 D64 and D128, then the
#                      four bench shapes
#   delta-group        the same with the tile stages in workgroups of 256 and of 128 (FASTWEIGHTS_DELTA_GROUP)
#   delta-pipeline     the chunked delta rule (bf16) at T2048 D64 and D128, profiled, with the tensor-core
#                      products pipelined nowhere, everywhere and where the backend chooses (FASTWEIGHTS_DELTA_PIPELINE)
#   delta-latency      the chunked delta rule (bf16, D64, T2048) profiled at B1 H1, B1 H2, B1 H4, B2 H8 and
#                      B8 H16: with fewer workgroups than SMs a kernel's time is one workgroup's latency
#   delta-fragments    the chunked delta rule (bf16) with the state passes on tile products
#                      (FASTWEIGHTS_DELTA_STATE=tiles), on accumulator fragments (the default), and so with the
#                      forward pass's prefetching variant at Dk = 128 instead of its _lean one: per-kernel profile
#                      and pipeline statistics at T2048 D64 and D128, then the four bench shapes with the default
#                      and with the prefetching variant
#   delta-stage-fragments  the chunked delta rule (bf16) with every parallel stage on the tile products, with
#                      all but the output stage on accumulator fragments, and with all of them (the default):
#                      per-kernel profile and pipeline statistics at T2048 D64 and D128
#   delta-8192 fla-8192 ours and flash-linear-attention's chunked delta rule at B8 H16 T8192 D64 bf16 only
#   delta-wy-fragments stage 1 of the chunked delta rule (bf16) on the tile products and on fragments
#                      (chunk_wy_fragments.comp): per-kernel profile and pipeline statistics at T2048 D64 and D128
#   delta-wy-backward  the chunked delta rule (bf16) with the WY backward on the tile products and on
#                      fragments: per-kernel profile and pipeline statistics at T2048 D64 and D128
#   delta-fused-output the chunked delta rule (bf16) with the outputs formed by the output stage and in the
#                      forward state pass: per-kernel profile and pipeline statistics at T2048 D64 and D128
#   delta-operands     the chunked delta rule (bf16) with f32 operands split into two bf16 parts and
#                      rounded to bf16 (FASTWEIGHTS_DELTA_COOPMAT=bf16): per-kernel profile and pipeline
#                      statistics at T2048 D64 and D128
#   delta-rounded      the delta section's four shapes with the operands rounded to bf16
#   delta-d128-rows    the chunked delta rule (bf16, rounded) at D128 with 32 and 64 state rows per workgroup in
#                      the fragment state passes (FASTWEIGHTS_DELTA_FRAGMENT_ROWS), and 64 with compact intermediates:
#                      profile at T2048, then T2048 and T8192
#   delta-state-variants the fragment state passes with compact intermediates (the defaults since run 85): at
#                      T2048 D128 the forward pass lean and prefetching W (FASTWEIGHTS_DELTA_FRAGMENT_LEAN=1, 0), and
#                      prefetching with 64 rows for both passes; at T8192 D64 32 and 64 rows (profiles)
#   delta-merged       the q, k gradients with two blocks per staging (FASTWEIGHTS_DELTA_MERGED_STAGING=0, 1):
#                      profiles at T2048 D64 and D128
#   delta-fused-values the chunked delta rule (bf16, defaults) at D64 with dU'_local from chunk_values_grad and
#                      from the backward state pass (FASTWEIGHTS_DELTA_FUSED_VALUES=0, 1): profiles at T2048 and T8192
#   delta-merged-output the forward output stage with S_0's and U''s blocks staged together
#                      (FASTWEIGHTS_DELTA_MERGED_OUTPUT=0, 1): profiles at T2048 and T8192 D128
#   delta-merged-wy    the WY backward with dU's and dW's blocks staged in pairs (FASTWEIGHTS_DELTA_MERGED_WY_BACKWARD=0, 1):
#                      profiles at T2048 D64 and D128, T8192 D64
#   delta-new          the chunked delta rule (bf16) at the issue's four shapes with the three settings first
#                      measured in run 90 (FASTWEIGHTS_DELTA_FUSED_VALUES, FASTWEIGHTS_DELTA_MERGED_OUTPUT,
#                      FASTWEIGHTS_DELTA_MERGED_WY_BACKWARD; on by default since) all off and all on
#   fla-profile        flash-linear-attention's chunk_delta_rule per CUDA kernel (torch.profiler) at the issue's four
#                      shapes (FW_FLA_PROFILE_ARGS="B H T D ..." instead), forward and forward+backward (bench/peers/fla_profile.py)
#   delta-issue-profile ours per kernel (FASTWEIGHTS_PROFILE=1) at the issue's four shapes, to set beside fla-profile
#   delta-gated        the gated delta rule (bf16, alpha in (0.9, 1)) at B8 H16 T2048 D64 and D128, recurrent and
#                      chunked, then chunked at T8192 D64 and D128, profiled (the default: parallel stages on tensor cores)
#   fla-gated          flash-linear-attention's chunk_gated_delta_rule at the same four shapes (bench/peers/fla_gated.py)
#   delta-gated-sequential the gated rule chunked (bf16) at the four shapes with its state passes on the f32
#                      register-tiled kernels (FASTWEIGHTS_DELTA_STATE=tiles; by default they run on fragments), profiled
#   delta-gated-portable the gated rule chunked (bf16) at the four shapes with its parallel stages on the portable
#                      f32 products (FASTWEIGHTS_DELTA_GATED_COOPMAT=0), profiled
#   delta-fused-saving the chunked delta rule (bf16, rounded) at D64 with the saving forward's outputs formed by the
#                      output stage and in the state pass (FASTWEIGHTS_DELTA_FUSED_SAVING=0, 1): profile at T2048,
#                      then T2048 and T8192
#   delta-compact      the chunked delta rule (bf16, operands rounded) with its rounded-operand intermediates
#                      stored as f32 and as bf16 (FASTWEIGHTS_DELTA_COMPACT=0, 1): per-kernel profile at T2048 D64
#                      and D128, then the delta section's four shapes each way
#   delta-probe        the chunked delta rule (bf16, T2048, D64 and D128) profiled with each FASTWEIGHTS_DELTA_PROBE
#                      setting of the state passes on fragments (work left out: 1 global stores, 2 next-chunk
#                      reads, 4 barriers, 8 products, 16 shared-memory stores), then at B1 H1 and B1 H4
#   delta-early        the chunked delta rule (bf16, T2048, D64 and D128) profiled with the forward state pass's next-chunk
#                      reads issued late (FASTWEIGHTS_DELTA_EARLY_FETCH=0, the run-79 order) and early (the default)
#   delta-jit          the chunked delta rule (bf16, D128, T2048 and T8192) profiled with the forward state pass as the
#                      32-row lean pass (FASTWEIGHTS_DELTA_FRAGMENT_JIT=0) and the 64-row _jit pass (the default). Runs 94
#                      and 95 ran it (and delta-jit-rows) with settings for backward and 32-row _jit variants that were
#                      dropped after them; their result files name the commits
#   delta-narrow       the chunked delta rule (bf16, D128, T2048 and T8192) profiled with the backward state pass as
#                      the 64-row pass (FASTWEIGHTS_DELTA_NARROW_BACKWARD=0) and as 4-subgroup workgroups of 32 rows (the default)
#   delta-fragment-rows the chunked delta rule (bf16, D64) with 64 and 32 state rows per workgroup in the
#                      fragment state passes: per-kernel profile and pipeline statistics at T2048
#   staging-forms      the chunked delta rule (bf16, bf16 outputs) with FASTWEIGHTS_DELTA_REGISTER_SCORES and
#                      FASTWEIGHTS_DELTA_OUTPUT_READS_AHEAD each 0 and 1: per-kernel profile and the stages'
#                      register counts at T8192 D128, then #3's four shapes
# With FW_SMI_LOG=<file>, nvidia-smi samples SM clock, power, temperature, utilisation and the
# clock-event (throttle) reasons every 200 ms into that file while the sections run.
# Extra arguments for a section: FW_<SECTION>_ARGS (e.g. FW_GEMM_ARGS="--sizes 4096").
set -uo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /tmp/app/pub/cli/fastweights ]; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  mkdir -p /tmp/app && tar -C /tmp/app -xJf .bundle/fastweights-gpu.tar.xz
fi
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
export PYTHONUNBUFFERED=1
fw=/tmp/app/pub/cli/fastweights
# The test runner, printing each test as it ends unless the arguments choose an --output themselves
# (the runner refuses the option twice).
tests() {
  case " $* " in
    *" --output "*) /tmp/app/pub/tests/Engine.Tests "$@" ;;
    *) /tmp/app/pub/tests/Engine.Tests --output detailed "$@" ;;
  esac
}
issue_shapes=8,16,2048,64,8,16,2048,128,8,16,8192,64,8,16,8192,128   # #3's B8 H16 T2048 / 8192 D64 / 128
# tests-a's classes (name prefixes); tests-b takes every other class
first_half="" other_half=""
for c in Cpu DeltaRule FeatureMap GemmTests LinearAttention; do
  first_half+="${first_half:+|}FullyQualifiedName~FastWeights.Engine.Tests.$c"
  other_half+="${other_half:+&}FullyQualifiedName!~FastWeights.Engine.Tests.$c"
done
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader 2>/dev/null | sed 's/^/# gpu: /'
if [ -n "${FW_SMI_LOG:-}" ]; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active \
    --format=csv -lms 200 > "$FW_SMI_LOG" 2>&1 &
  smi=$!
  trap 'kill $smi 2>/dev/null' EXIT
fi
# delta_profiles SHAPES PIPELINES SETTING...: the chunked delta rule (bf16) at SHAPES once per SETTING
# (environment assignments, space-separated), each with its per-kernel profile and the pipeline
# statistics of the kernels matching PIPELINES.
delta_profiles() {
  local shapes=$1 pipelines=$2 v; shift 2
  for v in "$@"; do
    echo "# $v"
    env $v FASTWEIGHTS_PIPELINE_STATS=1 FASTWEIGHTS_PROFILE=1 $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape "$shapes" $extra \
      | grep -E "^(pipeline.*$pipelines|profile|delta)"
  done
}
# setting_rounds NAME "VALUES" BENCH-ARGS...: for each value of the environment switch NAME, the
# per-kernel profile (with register counts) at B8 H16 T8192 D128, then #3's four shapes, one call each.
setting_rounds() {
  local name=$1 values=$2 v; shift 2
  for v in $values; do
    echo "# $name=$v"
    env "$name=$v" FASTWEIGHTS_PIPELINE_STATS=1 FASTWEIGHTS_PROFILE=1 $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked \
      --shape 8,16,8192,128 "$@" $extra | grep -E '^(pipeline|profile)'
    env "$name=$v" $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape $issue_shapes "$@" $extra | grep -E '^(delta|gated)'
  done
}
for section in "$@"; do
  echo "## $section $(date -u +%T.%N | cut -c1-12)"
  var="FW_$(echo "$section" | tr 'a-z-' 'A-Z_')_ARGS"
  extra=${!var:-}
  case "$section" in
    devices) $fw devices ;;
    tests) tests $extra ;;
    tests-a) tests --filter "$first_half" $extra ;;
    tests-b) tests --filter "$other_half" $extra ;;
    tensorcores) tests --filter "TestCategory=TensorCores|TestCategory=ConcurrentWorkgroups" $extra ;;
    gemm) $fw bench gemm --backend vulkan --sizes 4096,8192 --cm2-tiles auto,128x128x32,128x256x32,128x256x16,128x128x16 $extra
          $fw bench gemm --backend vulkan --sizes 4096,8192 --dtype bf16 --cm2-tiles 128x128x32,128x256x32,128x256x16,128x128x16,auto $extra
          FASTWEIGHTS_NO_COOPMAT2=1 $fw bench gemm --backend vulkan --sizes 4096,8192 --dtype f16 $extra
          FASTWEIGHTS_NO_COOPMAT2=1 FASTWEIGHTS_GEMM_DIRECT=plain $fw bench gemm --backend vulkan --sizes 4096,8192 --dtype f16 $extra
          FASTWEIGHTS_GEMM_SPECIALISE=0 $fw bench gemm --backend vulkan --sizes 4096,8192 --dtype f16 --cm2-tiles 128x256x32 $extra
          FASTWEIGHTS_GEMM_SPECIALISE=0 FASTWEIGHTS_NO_COOPMAT2=1 $fw bench gemm --backend vulkan --sizes 4096,8192 --dtype f16 $extra ;;
    torch-gemm) python3 bench/peers/torch_gemm.py 4096 8192 $extra ;;
    delta) $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape $issue_shapes $extra
           $fw bench delta --backend vulkan --dtype f32 --shape 8,16,2048,64 $extra ;;
    fla) PYTHONPATH=.peers python3 bench/peers/fla_delta.py 8 16 2048 64 8 16 2048 128 8 16 8192 64 8 16 8192 128 4 8 1024 64 ;;
    fla-chunk) FLA_CHUNK_ONLY=1 PYTHONPATH=.peers python3 bench/peers/fla_delta.py ${issue_shapes//,/ } ;;
    delta-half) $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape $issue_shapes --outputs bf16 $extra ;;
    delta-half-profile) FASTWEIGHTS_PROFILE=1 $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape $issue_shapes --outputs bf16 $extra | grep -E '^(profile|delta)' ;;
    delta-gated-compact) for v in 0 1; do echo "# FASTWEIGHTS_DELTA_GATED_COMPACT=$v"
        FASTWEIGHTS_DELTA_GATED_COMPACT=$v FASTWEIGHTS_PROFILE=1 $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --gated true --shape 8,16,2048,128,8,16,8192,128 $extra | grep -E '^(profile|gated)'; done ;;
    delta-gated) $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --gated true --shape 8,16,2048,128,8,16,8192,128 $extra ;;
    probe) FASTWEIGHTS_PIPELINE_STATS=1 $fw bench probe --items 8192 --blocks 8 $extra | grep -E '^(pipeline|copy|block)' ;;
    lane-stores) setting_rounds FASTWEIGHTS_DELTA_LANE_STORES "0 1 5" --outputs bf16 ;;
    compact-summands) setting_rounds FASTWEIGHTS_DELTA_COMPACT_SUMMANDS "0 1" --outputs bf16 ;;
    compact-u) (export FASTWEIGHTS_DELTA_COMPACT_SUMMANDS=1; setting_rounds FASTWEIGHTS_DELTA_COMPACT_U "0 1" --outputs bf16) ;;
    raw-tokens) setting_rounds FASTWEIGHTS_DELTA_RAW_TOKENS "0 1" --outputs bf16 ;;
    raw-keys) setting_rounds FASTWEIGHTS_DELTA_RAW_KEYS "0 1" --outputs bf16 ;;
    staging-forms) for v in "FASTWEIGHTS_DELTA_REGISTER_SCORES=0 FASTWEIGHTS_DELTA_OUTPUT_READS_AHEAD=0" "FASTWEIGHTS_DELTA_REGISTER_SCORES=1 FASTWEIGHTS_DELTA_OUTPUT_READS_AHEAD=0" \
        "FASTWEIGHTS_DELTA_REGISTER_SCORES=0 FASTWEIGHTS_DELTA_OUTPUT_READS_AHEAD=1" "FASTWEIGHTS_DELTA_REGISTER_SCORES=1 FASTWEIGHTS_DELTA_OUTPUT_READS_AHEAD=1"; do
        echo "# $v"
        env $v FASTWEIGHTS_PIPELINE_STATS=1 FASTWEIGHTS_PROFILE=1 $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape 8,16,8192,128 --outputs bf16 $extra \
          | grep -E '^(profile|pipeline .*(output|grad_qk|values))'
        env $v $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape $issue_shapes --outputs bf16 $extra | grep -E '^delta'
      done ;;
    stage-probe)
      for v in 0 1 2 4 8 16 3 24 31; do
        echo "# FASTWEIGHTS_STAGE_PROBE=$v"
        FASTWEIGHTS_STAGE_PROBE=$v FASTWEIGHTS_PIPELINE_STATS=1 FASTWEIGHTS_PROFILE=1 $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --outputs bf16 --shape 8,16,8192,128 $extra \
          | grep -E '^(pipeline.*chunk_(output|values)|profile.*chunk_(output|values)|profile delta|delta)'
      done ;;
    delta-gated-jit) setting_rounds FASTWEIGHTS_DELTA_GATED_JIT "0 1" --gated true ;;
    delta-gated-profile) FASTWEIGHTS_PROFILE=1 $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --gated true --shape 8,16,8192,128 $extra | grep -E '^(profile|delta)' ;;
    delta-gated-issue) $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --gated true --shape $issue_shapes $extra ;;
    delta-gated-fragments)
      for v in "FASTWEIGHTS_DELTA_GATED_WY_FRAGMENTS=0 FASTWEIGHTS_DELTA_GATED_GRAD_QK_FRAGMENTS=0 FASTWEIGHTS_DELTA_GATED_WY_BACKWARD_FRAGMENTS=0" \
               FASTWEIGHTS_DELTA_GATED_WY_FRAGMENTS=0 FASTWEIGHTS_DELTA_GATED_GRAD_QK_FRAGMENTS=0 FASTWEIGHTS_DELTA_GATED_WY_BACKWARD_FRAGMENTS=0 \
               FASTWEIGHTS_DELTA_GATED_WY_FRAGMENTS=1; do
        echo "# $v"
        env $v FASTWEIGHTS_PROFILE=1 $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --gated true --shape 8,16,2048,128,8,16,8192,128 $extra \
          | grep -E "^(profile|gated)"
      done ;;
    rnn) $fw bench rnn --backend vulkan --cells lstm,gru --hidden 768,1024 --heads 1,4,8 --batch 16 --steps 1024 $extra
         FASTWEIGHTS_RNN_STEP_UNITS=8 $fw bench rnn --backend vulkan --cells lstm --hidden 768 --heads 1 --batch 16 --steps 1024 $extra ;;
    cudnn) python3 bench/peers/torch_rnn.py 768 1024 ;;
    flashrnn) PYTHONPATH=.peers python3 bench/peers/flashrnn_bench.py 768 1 768 4 ;;
    step) $fw bench step --backend vulkan --shape 1,16,128 ;;
    scan) $fw bench scan --backend vulkan --shape 8,4096,2048 ;;
    torch-copy) python3 bench/peers/torch_copy.py ;;
    gemm-best) for d in bf16 f16; do $fw bench gemm --backend vulkan --sizes 4096,8192 --dtype $d --cm2-tiles 128x128x64 $extra | grep -E '^(gemm|samples)'; done ;;
    gemm-tiles) for d in bf16 f16; do for tile in 128x128x32 128x256x32 256x128x32 128x128x64 128x256x16; do
                  $fw bench gemm --backend vulkan --sizes 4096,8192 --dtype $d --cm2-tiles $tile $extra | grep -E '^(gemm|samples)'; done; done ;;
    rnn-persistent) for p in 0 auto; do FASTWEIGHTS_RNN_PERSISTENT=$p $fw bench rnn --backend vulkan --cells lstm,gru --hidden 768,1024 --heads 1,4 --batch 16 --steps 1024 --projection bf16 $extra; done ;;
    rnn-bf16) $fw bench rnn --backend vulkan --cells lstm,gru --hidden 768,1024 --heads 1,4,8 --batch 16 --steps 1024 --projection bf16 $extra ;;
    rnn-units) for u in 4 8 16; do FASTWEIGHTS_PROFILE=1 FASTWEIGHTS_RNN_PERSISTENT=0 FASTWEIGHTS_RNN_STEP_UNITS=$u $fw bench rnn --backend vulkan --cells lstm,gru --hidden 1024 --heads 1 --batch 16 --steps 1024 --projection bf16 $extra | grep -E '^(Lstm|Gru|profile [A-Z]|profile .*(_step|tiled))'; done
               FASTWEIGHTS_PROFILE=1 FASTWEIGHTS_RNN_STEP_UNITS=16 $fw bench rnn --backend vulkan --cells lstm --hidden 1024 --heads 1 --batch 16 --steps 1024 --projection bf16 $extra | grep -E '^(Lstm|profile [A-Z]|profile .*(_step|tiled))' ;;
    rnn-regs) for v in FASTWEIGHTS_RNN_WEIGHT_REGS=0 FASTWEIGHTS_RNN_WEIGHT_REGS=1 FASTWEIGHTS_RNN_PERSISTENT=1; do
                echo "# $v"; env $v $fw bench rnn --backend vulkan --cells lstm,gru --hidden 768,1024 --heads 1,4 --batch 16 --steps 1024 --projection bf16 $extra
              done
              FASTWEIGHTS_RNN_PERSISTENT=1 FASTWEIGHTS_PIPELINE_STATS=1 FASTWEIGHTS_PROFILE=1 $fw bench rnn --backend vulkan --cells lstm,gru --hidden 1024 --heads 1 --batch 16 --steps 1024 --projection bf16 $extra | grep -E '^(pipeline rnn|profile [A-Z]|profile .*(_step|tiled))' ;;
    rnn-rows) for v in "FASTWEIGHTS_RNN_ROW_PARTIALS=0" "FASTWEIGHTS_RNN_ROW_PARTIALS=1" "FASTWEIGHTS_RNN_ROW_PARTIALS=1 FASTWEIGHTS_RNN_STEP_UNITS=8"; do
                echo "# $v"; env $v $fw bench rnn --backend vulkan --cells lstm,gru --hidden 768,1024 --heads 1 --batch 16 --steps 1024 --projection bf16 $extra | grep -E '^(Lstm|Gru)'
              done
              FASTWEIGHTS_RNN_ROW_PARTIALS=1 FASTWEIGHTS_PIPELINE_STATS=1 FASTWEIGHTS_PROFILE=1 $fw bench rnn --backend vulkan --cells lstm --hidden 1024 --heads 1 --batch 16 --steps 1024 --projection bf16 $extra | grep -E '^(pipeline rnn/lstm_bwd|profile [A-Z]|profile .*_step)' ;;
    rnn-chunk64) FASTWEIGHTS_RNN_STEP_CHUNK=64 $fw bench rnn --backend vulkan --cells lstm --hidden 768 --heads 1 --batch 16 --steps 1024 $extra ;;
    delta-one) $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape 8,16,2048,64 $extra
               $fw bench delta --backend vulkan --dtype f32 --algorithm chunked --shape 8,16,2048,64 $extra ;;
    fla-one) PYTHONPATH=.peers python3 bench/peers/fla_delta.py 8 16 2048 64 ;;
    delta-8192) $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape 8,16,8192,64 $extra ;;
    fla-8192) PYTHONPATH=.peers python3 bench/peers/fla_delta.py 8 16 8192 64 ;;
    delta-profile) for d in bf16 f32; do FASTWEIGHTS_PROFILE=1 $fw bench delta --backend vulkan --dtype $d --algorithm chunked --shape 8,16,2048,64 $extra | grep -E '^(delta|profile)'; done ;;
    rnn-profile) FASTWEIGHTS_PROFILE=1 $fw bench rnn --backend vulkan --cells lstm --hidden 768,1024 --heads 1,4 --batch 16 --steps 1024 --projection bf16 $extra | grep -E '^(Lstm|profile)' ;;
    gemm-sweep) for cfg in "128x256x32 0" "128x256x32 8" "128x256x64 0" "128x256x64 8" "128x128x64 8"; do
                  set -- $cfg; echo "# tile $1, FASTWEIGHTS_GEMM_CM2_GROUP=$2"
                  FASTWEIGHTS_GEMM_CM2_GROUP=$2 $fw bench gemm --backend vulkan --sizes 4096,8192 --dtype bf16 --cm2-tiles $1 $extra | grep -E '^(gemm|samples)'; done ;;
    pipeline-stats) FASTWEIGHTS_PIPELINE_STATS=1 FASTWEIGHTS_PROFILE=1 $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape 8,16,2048,64,8,16,2048,128 $extra | grep -E '^(pipeline|profile|delta)'
                    FASTWEIGHTS_PIPELINE_STATS=1 $fw bench rnn --backend vulkan --cells lstm --hidden 768 --heads 1,4,8 --batch 16 --steps 1024 --projection bf16 $extra | grep -E '^(pipeline|Lstm|lstm)' ;;
    gemm-invocations) for cfg in "128x256x64 256" "128x256x64 128" "128x128x64 256" "128x128x64 128" "128x128x32 256" "128x128x32 128"; do
                  set -- $cfg; echo "# tile $1, FASTWEIGHTS_GEMM_CM2_INVOCATIONS=$2"
                  FASTWEIGHTS_GEMM_CM2_INVOCATIONS=$2 $fw bench gemm --backend vulkan --sizes 4096,8192 --dtype bf16 --cm2-tiles $1 $extra | grep -E '^(gemm|samples)'; done ;;
    gemm-cm2-128) for cfg in "bf16 128x128x64 8" "f16 128x128x64 8" "bf16 128x128x16 8" "bf16 128x128x64 4" "bf16 128x128x64 16"; do
                  set -- $cfg; echo "# $1 tile $2 at 128 invocations, FASTWEIGHTS_GEMM_CM2_GROUP=$3"
                  FASTWEIGHTS_GEMM_CM2_INVOCATIONS=128 FASTWEIGHTS_GEMM_CM2_GROUP=$3 $fw bench gemm --backend vulkan --sizes 4096,8192 --dtype $1 --cm2-tiles $2 $extra | grep -E '^(gemm|samples)'; done ;;
    gemm-128) for d in bf16 f16; do for tile in auto 128x128x64 128x256x64; do echo "# $d tile $tile (default workgroup sizes)"
                $fw bench gemm --backend vulkan --sizes 4096,8192 --dtype $d --cm2-tiles $tile $extra | grep -E '^(gemm|samples)'; done; done ;;
    gemm-staged) for d in bf16 f16; do
                   echo "# $d: driver-staged 128x128x64 (default workgroup size), self-staged on 128 and on 256, self-staged with tensor loads on 128"
                   FASTWEIGHTS_PIPELINE_STATS=1 $fw bench gemm --backend vulkan --sizes 4096,8192 --dtype $d --cm2-tiles 128x128x64 $extra | grep -E '^(gemm|samples|pipeline)'
                   FASTWEIGHTS_PIPELINE_STATS=1 FASTWEIGHTS_GEMM_CM2_STAGED=1 $fw bench gemm --backend vulkan --sizes 4096,8192 --dtype $d --cm2-tiles 128x128x32 $extra | grep -E '^(gemm|samples|pipeline)'
                   FASTWEIGHTS_GEMM_CM2_STAGED=1 FASTWEIGHTS_GEMM_CM2_INVOCATIONS=256 $fw bench gemm --backend vulkan --sizes 4096,8192 --dtype $d --cm2-tiles 128x128x32 $extra | grep -E '^(gemm|samples)'
                   FASTWEIGHTS_PIPELINE_STATS=1 FASTWEIGHTS_GEMM_CM2_STAGED=tensor $fw bench gemm --backend vulkan --sizes 4096,8192 --dtype $d --cm2-tiles 128x128x32 $extra | grep -E '^(gemm|samples|pipeline)'; done ;;
    gemm-repeat) for i in 1 2 3 4 5; do $fw bench gemm --backend vulkan --sizes 4096,8192 --dtype bf16 --cm2-tiles 128x256x32 $extra | grep '^gemm'; done ;;
    delta-order) for i in 1 2; do for d in f32 bf16; do
                   $fw bench delta --backend vulkan --dtype $d --algorithm chunked --shape 8,16,2048,64 $extra | grep '^delta'; done; done ;;
    delta-state) for pass in sequential tiles; do echo "# FASTWEIGHTS_DELTA_STATE=$pass"
                   FASTWEIGHTS_DELTA_STATE=$pass FASTWEIGHTS_PIPELINE_STATS=1 FASTWEIGHTS_PROFILE=1 $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape 8,16,2048,64,8,16,2048,128 $extra | grep -E '^(pipeline.*state|profile|delta)'; done
                 for pass in sequential tiles; do echo "# FASTWEIGHTS_DELTA_STATE=$pass"
                   FASTWEIGHTS_DELTA_STATE=$pass $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape 8,16,2048,64,8,16,2048,128,8,16,8192,64,8,16,8192,128 $extra | grep -E '^delta'; done ;;
    delta-pipeline) for pl in 0 1 auto; do echo "# FASTWEIGHTS_DELTA_PIPELINE=$pl"
      FASTWEIGHTS_DELTA_PIPELINE=$pl FASTWEIGHTS_PROFILE=1 $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape 8,16,2048,64,8,16,2048,128 $extra | grep -E '^(delta|profile)'; done ;;
    delta-latency) for s in 1,1,2048,64 1,2,2048,64 1,4,2048,64 2,8,2048,64 8,16,2048,64; do
      FASTWEIGHTS_PROFILE=1 $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape $s $extra | grep -E '^(delta|profile)'; done ;;
    delta-group) for g in 256 128; do echo "# FASTWEIGHTS_DELTA_GROUP=$g"
                   FASTWEIGHTS_DELTA_GROUP=$g FASTWEIGHTS_PIPELINE_STATS=1 FASTWEIGHTS_PROFILE=1 $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape 8,16,2048,64,8,16,2048,128 $extra | grep -E '^(pipeline.*chunk|profile|delta)'; done
                 for g in 256 128; do echo "# FASTWEIGHTS_DELTA_GROUP=$g"
                   FASTWEIGHTS_DELTA_GROUP=$g $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape 8,16,2048,64,8,16,2048,128,8,16,8192,64,8,16,8192,128 $extra | grep -E '^delta'; done ;;
    delta-fragments) for v in "FASTWEIGHTS_DELTA_STATE=tiles" "FASTWEIGHTS_DELTA_STATE=auto" "FASTWEIGHTS_DELTA_FRAGMENT_LEAN=0"; do echo "# $v"
                   env $v FASTWEIGHTS_PIPELINE_STATS=1 FASTWEIGHTS_PROFILE=1 $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape 8,16,2048,64,8,16,2048,128 $extra | grep -E '^(pipeline.*(state|wy)|profile|delta)'; done
                 for v in "FASTWEIGHTS_DELTA_STATE=auto" "FASTWEIGHTS_DELTA_FRAGMENT_LEAN=0"; do echo "# $v"
                   env $v $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape 8,16,2048,64,8,16,2048,128,8,16,8192,64,8,16,8192,128 $extra | grep -E '^delta'; done ;;
    delta-stage-fragments) delta_profiles 8,16,2048,64,8,16,2048,128 '(wy|grad_qk|output|values)' \
                     "FASTWEIGHTS_DELTA_WY_FRAGMENTS=0 FASTWEIGHTS_DELTA_WY_BACKWARD_FRAGMENTS=0 FASTWEIGHTS_DELTA_GRAD_QK_FRAGMENTS=0 FASTWEIGHTS_DELTA_OUTPUT_FRAGMENTS=0" \
                     FASTWEIGHTS_DELTA_OUTPUT_FRAGMENTS=0 FASTWEIGHTS_DELTA_OUTPUT_FRAGMENTS=1 ;;
    delta-wy-fragments) delta_profiles 8,16,2048,64,8,16,2048,128 wy FASTWEIGHTS_DELTA_WY_FRAGMENTS=0 FASTWEIGHTS_DELTA_WY_FRAGMENTS=1 ;;
    delta-wy-backward) delta_profiles 8,16,2048,64,8,16,2048,128 '(wy|grad_qk|output|values)' \
                     FASTWEIGHTS_DELTA_WY_BACKWARD_FRAGMENTS=0 FASTWEIGHTS_DELTA_WY_BACKWARD_FRAGMENTS=1 ;;
    delta-fused-output) delta_profiles 8,16,2048,64,8,16,2048,128 '(wy|state|output)' FASTWEIGHTS_DELTA_FUSED_OUTPUT=0 FASTWEIGHTS_DELTA_FUSED_OUTPUT=1 ;;
    delta-operands) delta_profiles 8,16,2048,64,8,16,2048,128 '(wy|state|grad|output|values)' FASTWEIGHTS_DELTA_COOPMAT=split FASTWEIGHTS_DELTA_COOPMAT=bf16 ;;
    delta-rounded) FASTWEIGHTS_DELTA_COOPMAT=bf16 $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape $issue_shapes $extra ;;
    delta-d128-rows) delta_profiles 8,16,2048,128 'state' FASTWEIGHTS_DELTA_FRAGMENT_ROWS=32 FASTWEIGHTS_DELTA_FRAGMENT_ROWS=64 \
        "FASTWEIGHTS_DELTA_FRAGMENT_ROWS=64 FASTWEIGHTS_DELTA_COMPACT=1"
      for v in FASTWEIGHTS_DELTA_FRAGMENT_ROWS=32 FASTWEIGHTS_DELTA_FRAGMENT_ROWS=64 "FASTWEIGHTS_DELTA_FRAGMENT_ROWS=64 FASTWEIGHTS_DELTA_COMPACT=1"; do echo "# $v"
        env $v $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape 8,16,2048,128,8,16,8192,128 $extra | grep -E '^delta'; done ;;
    delta-state-variants) delta_profiles 8,16,2048,128 'state' FASTWEIGHTS_DELTA_FRAGMENT_LEAN=1 FASTWEIGHTS_DELTA_FRAGMENT_LEAN=0 \
        "FASTWEIGHTS_DELTA_FRAGMENT_LEAN=0 FASTWEIGHTS_DELTA_FRAGMENT_ROWS=64"
      delta_profiles 8,16,8192,64 'state' FASTWEIGHTS_DELTA_FRAGMENT_ROWS=64 FASTWEIGHTS_DELTA_FRAGMENT_ROWS=32 ;;
    delta-merged) delta_profiles 8,16,2048,64,8,16,2048,128 'grad' FASTWEIGHTS_DELTA_MERGED_STAGING=0 FASTWEIGHTS_DELTA_MERGED_STAGING=1 ;;
    delta-fused-values) delta_profiles 8,16,2048,64,8,16,8192,64 '(state|values)' FASTWEIGHTS_DELTA_FUSED_VALUES=0 FASTWEIGHTS_DELTA_FUSED_VALUES=1 ;;
    delta-merged-output) delta_profiles 8,16,2048,128,8,16,8192,128 'output' FASTWEIGHTS_DELTA_MERGED_OUTPUT=0 FASTWEIGHTS_DELTA_MERGED_OUTPUT=1 ;;
    delta-merged-wy) delta_profiles 8,16,2048,64,8,16,2048,128,8,16,8192,64 'wy_backward' FASTWEIGHTS_DELTA_MERGED_WY_BACKWARD=0 FASTWEIGHTS_DELTA_MERGED_WY_BACKWARD=1 ;;
    delta-new) for v in "FASTWEIGHTS_DELTA_FUSED_VALUES=0 FASTWEIGHTS_DELTA_MERGED_OUTPUT=0 FASTWEIGHTS_DELTA_MERGED_WY_BACKWARD=0" "FASTWEIGHTS_DELTA_FUSED_VALUES=1 FASTWEIGHTS_DELTA_MERGED_OUTPUT=1 FASTWEIGHTS_DELTA_MERGED_WY_BACKWARD=1"; do
        echo "# $v"; env $v $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape $issue_shapes $extra | grep -E '^delta'; done ;;
    fla-profile) PYTHONPATH=.peers python3 bench/peers/fla_profile.py ${extra:-8 16 2048 64 8 16 2048 128 8 16 8192 64 8 16 8192 128} ;;
    delta-issue-profile) delta_profiles $issue_shapes '^$' "${FW_DELTA_SETTING:-FASTWEIGHTS_PROFILE=1}" ;;
    delta-gated) $fw bench delta --backend vulkan --dtype bf16 --gated true --shape 8,16,2048,64,8,16,2048,128 $extra | grep -E '^gated'
        FASTWEIGHTS_PROFILE=1 $fw bench delta --backend vulkan --dtype bf16 --gated true --algorithm chunked --shape 8,16,8192,64,8,16,8192,128 $extra | grep -E '^(gated|profile)' ;;
    delta-gated-sequential) FASTWEIGHTS_DELTA_STATE=tiles FASTWEIGHTS_PROFILE=1 $fw bench delta --backend vulkan --dtype bf16 --gated true --algorithm chunked --shape $issue_shapes $extra | grep -E '^(gated|profile)' ;;
    delta-gated-portable) FASTWEIGHTS_DELTA_GATED_COOPMAT=0 FASTWEIGHTS_PROFILE=1 $fw bench delta --backend vulkan --dtype bf16 --gated true --algorithm chunked --shape $issue_shapes $extra | grep -E '^(gated|profile)' ;;
    fla-gated) PYTHONPATH=.peers python3 bench/peers/fla_gated.py 8 16 2048 64 8 16 2048 128 8 16 8192 64 8 16 8192 128 ;;
    delta-fused-saving) delta_profiles 8,16,2048,64 '(wy|state|output)' FASTWEIGHTS_DELTA_FUSED_SAVING=0 FASTWEIGHTS_DELTA_FUSED_SAVING=1
      for v in 0 1; do echo "# FASTWEIGHTS_DELTA_FUSED_SAVING=$v"
        FASTWEIGHTS_DELTA_FUSED_SAVING=$v $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape 8,16,2048,64,8,16,8192,64 $extra | grep -E '^delta'; done ;;
    delta-compact) delta_profiles 8,16,2048,64,8,16,2048,128 '(wy|state|grad|output|values)' \
        "FASTWEIGHTS_DELTA_COOPMAT=bf16 FASTWEIGHTS_DELTA_COMPACT=0" "FASTWEIGHTS_DELTA_COOPMAT=bf16 FASTWEIGHTS_DELTA_COMPACT=1"
      for c in 0 1; do echo "# FASTWEIGHTS_DELTA_COOPMAT=bf16 FASTWEIGHTS_DELTA_COMPACT=$c"
        FASTWEIGHTS_DELTA_COOPMAT=bf16 FASTWEIGHTS_DELTA_COMPACT=$c $fw bench delta --backend vulkan --dtype bf16 --algorithm chunked --shape $issue_shapes $extra | grep -E '^delta'; done ;;
    delta-probe) delta_profiles 8,16,2048,64,8,16,2048,128 state FASTWEIGHTS_DELTA_PROBE=0 FASTWEIGHTS_DELTA_PROBE=1 FASTWEIGHTS_DELTA_PROBE=2 \
                   FASTWEIGHTS_DELTA_PROBE=4 FASTWEIGHTS_DELTA_PROBE=8 FASTWEIGHTS_DELTA_PROBE=16 FASTWEIGHTS_DELTA_PROBE=3 \
                   FASTWEIGHTS_DELTA_PROBE=24 FASTWEIGHTS_DELTA_PROBE=7 FASTWEIGHTS_DELTA_PROBE=31
                 delta_profiles 1,1,2048,64,1,1,2048,128,1,4,2048,64 state FASTWEIGHTS_DELTA_PROBE=0 FASTWEIGHTS_DELTA_PROBE=4 ;;
    delta-early) delta_profiles 8,16,2048,64,8,16,2048,128 state FASTWEIGHTS_DELTA_EARLY_FETCH=0 FASTWEIGHTS_DELTA_EARLY_FETCH=1 ;;
    delta-jit) delta_profiles 8,16,2048,128,8,16,8192,128 'state' FASTWEIGHTS_DELTA_FRAGMENT_JIT=0 FASTWEIGHTS_DELTA_FRAGMENT_JIT=1 ;;
    delta-narrow) delta_profiles 8,16,2048,128,8,16,8192,128 'state_backward' FASTWEIGHTS_DELTA_NARROW_BACKWARD=0 FASTWEIGHTS_DELTA_NARROW_BACKWARD=1 ;;
    delta-fragment-rows) delta_profiles 8,16,2048,64 state FASTWEIGHTS_DELTA_FRAGMENT_ROWS=64 FASTWEIGHTS_DELTA_FRAGMENT_ROWS=32 ;;
    *) echo "gpu-host: unknown section $section" ;;
  esac
  echo "## end $section (exit $?) $(date -u +%T.%N | cut -c1-12)"
done
