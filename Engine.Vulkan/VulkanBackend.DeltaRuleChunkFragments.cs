using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// The parallel stages on tensor-core fragments (shaders/delta_rule/chunk_fragments.glsl):
// chunk_output_fragments.comp (chunk_output and chunk_values_grad), chunk_wy_backward_fragments.comp and
// chunk_grad_qk_fragments.comp keep every product's result in accumulator fragments and stage only f32
// operands through shared memory, where chunk_output.comp, chunk_wy_backward.comp and chunk_grad_qk.comp
// (chunk_tiles.glsl) stage both operands of every product and gather each result through shared memory
// into per-invocation tiles; chunk_wy_fragments.comp does the same for stage 1. The tile kernels
// take every problem the fragment kernels do not.
public sealed partial class VulkanBackend
{
    /// <summary>Whether the forward's output stage and the backward's intra-chunk dU' run
    /// chunk_output_fragments.comp where the fragment stages apply (<see cref="DeltaRuleFragmentStagesFit"/>):
    /// true by default; FASTWEIGHTS_DELTA_OUTPUT_FRAGMENTS=0, or false here, keeps chunk_output.comp.</summary>
    public bool DeltaRuleOutputFragments { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_OUTPUT_FRAGMENTS") != "0";

    /// <summary>Whether the output stage (and the backward's intra-chunk dU') of this problem run on fragments.</summary>
    public bool DeltaRuleUsesOutputFragments(DType keys, FastWeightShape s) => DeltaRuleOutputFragments && DeltaRuleFragmentStagesFit(keys, s);

    /// <summary>Whether stage 1 (chunk_wy) runs chunk_wy_fragments.comp (K K^T, the inverse by recursive
    /// doubling on 16 x 16 tiles, W and U, all on fragments) where the fragment stages apply
    /// (<see cref="DeltaRuleFragmentStagesFit"/>): true by default; FASTWEIGHTS_DELTA_WY_FRAGMENTS=0, or
    /// false here, keeps chunk_wy.comp.</summary>
    public bool DeltaRuleWyFragments { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_WY_FRAGMENTS") != "0";

    /// <summary>Whether chunk_wy of this problem runs on fragments (<see cref="DeltaRuleWyFragments"/>).</summary>
    public bool DeltaRuleUsesWyFragments(DType keys, FastWeightShape s) => DeltaRuleWyFragments && DeltaRuleFragmentStagesFit(keys, s);

    /// <summary>Whether a plain forward (not DeltaRule.ForwardSaving) at Dk = 64 forms its outputs inside
    /// the state pass on fragments (chunk_state_fragments.comp's _fused variants: O = scale Q S^T + P' U' per
    /// chunk, with P' = scale (Q K^T ⊙ M) from chunk_wy_fragments.comp) instead of in the output stage, where
    /// stage 1, the state pass and the output stage all run on fragments; it then stores neither U' nor the
    /// chunk-start states. True by default; FASTWEIGHTS_DELTA_FUSED_OUTPUT=0, or false here, keeps the output
    /// stage. H100, B8 H16 T2048 D64 bf16: plain forward 0.548 → 0.481 ms
    /// (bench/results/2026-12-06-h100-run75.txt). The saving forward keeps the output stage: with U' and
    /// the states stored the fused pass took 285 us and the training step 1.661 ms against 1.627 (run 76);
    /// at Dk = 128 the fused pass needed 252 registers, one workgroup per SM, and took 1187 us against
    /// 546 + 407 for the state pass and the output stage (run 74).</summary>
    public bool DeltaRuleFusedOutput { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_FUSED_OUTPUT") != "0";

    /// <summary>Whether the saving forward (DeltaRule.ForwardSaving) also forms its outputs in the state pass
    /// where a plain forward does (<see cref="DeltaRuleUsesFusedOutput"/>), the pass then also storing U' and
    /// the chunk-start states for the backward: true by default (FASTWEIGHTS_DELTA_FUSED_SAVING=0, or false
    /// here, keeps the output stage for it). With split operands it cost time (fused pass 285 us against
    /// 179 + 174, training step 1.661 ms against 1.627 at B8 H16 T2048 D64 bf16 on the H100,
    /// bench/results/2026-12-06-h100-run76.txt); with the rounded operands, the default since run 84, it
    /// saves it: H200, same problem, forward+backward 1.393 ms against 1.467, and at T8192 5.308 against
    /// 5.597 (bench/results/2026-12-06-h200-run85.txt).</summary>
    public bool DeltaRuleFusedSaving { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_FUSED_SAVING") != "0";

    /// <summary>Whether the backward state pass on fragments at Dk = 64 also forms the intra-chunk values
    /// gradient dU'_local = P'^T dO (chunk_state_backward_fragments.comp's _values variants), from the P'
    /// that stage 1 forms for the fused forward (<see cref="DeltaRuleUsesFusedOutput"/>), in place of
    /// chunk_values_grad and the f32 dU'_local it writes and the state pass reads. The saving forward
    /// (with <see cref="DeltaRuleFusedSaving"/>) then keeps P' (16 KiB a chunk) for the backward, and a
    /// recomputing backward has stage 1 form it. True by default; FASTWEIGHTS_DELTA_FUSED_VALUES=0, or
    /// false here, keeps chunk_values_grad. H100, B8 H16 bf16 D64 (bench/results/2026-12-07-h100-run90.txt,
    /// tools/gpu-host.sh delta-fused-values), forward+backward: T2048 1.342 → 1.205 ms, T8192 4.937 →
    /// 4.471 ms (the 495 us values gradient gone, the state pass 843 → 870 us). FragmentStagesMatchReference
    /// checks it.</summary>
    public bool DeltaRuleFusedValuesGradient { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_FUSED_VALUES") != "0";

    /// <summary>Whether this problem's backward forms dU'_local in its state pass
    /// (<see cref="DeltaRuleFusedValuesGradient"/>): stage 1 can form P' (<see cref="DeltaRuleUsesFusedOutput"/>),
    /// the backward state pass runs on fragments, and the scale is a nonzero finite number (the pass
    /// divides P'^T (scale dO) by it).</summary>
    public bool DeltaRuleUsesFusedValuesGradient(DType keys, FastWeightShape s, float scale) =>
        DeltaRuleFusedValuesGradient && DeltaRuleBackwardFragments && DeltaRuleUsesFusedOutput(keys, s)
        && scale != 0 && float.IsFinite(scale) && float.IsFinite(1 / scale);

    /// <summary>Whether a plain forward of this problem forms its outputs in the state pass (<see cref="DeltaRuleFusedOutput"/>).</summary>
    public bool DeltaRuleUsesFusedOutput(DType keys, FastWeightShape s) =>
        DeltaRuleFusedOutput && s.KeyDim == 64 && DeltaRuleUsesWyFragments(keys, s) && DeltaRuleUsesOutputFragments(keys, s) && DeltaRuleUsesStateFragments(keys, s);

    /// <summary>Whether the WY backward runs chunk_wy_backward_fragments.comp where the fragment stages
    /// apply (<see cref="DeltaRuleFragmentStagesFit"/>): true by default;
    /// FASTWEIGHTS_DELTA_WY_BACKWARD_FRAGMENTS=0, or false here, keeps chunk_wy_backward.comp.</summary>
    public bool DeltaRuleWyBackwardFragments { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_WY_BACKWARD_FRAGMENTS") != "0";

    /// <summary>Whether the per-chunk gradients of q and k run chunk_grad_qk_fragments.comp where the
    /// fragment stages apply (<see cref="DeltaRuleFragmentStagesFit"/>): true by default;
    /// FASTWEIGHTS_DELTA_GRAD_QK_FRAGMENTS=0, or false here, keeps chunk_grad_qk.comp.</summary>
    public bool DeltaRuleGradQKFragments { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_GRAD_QK_FRAGMENTS") != "0";

    /// <summary>Whether the fragment stages take this problem: the tensor-core products in use
    /// (<see cref="DeltaRuleUsesCoopMat"/>: bf16 keys), T a multiple of the chunk (whole 16 x 16
    /// fragments are read and written straight from the tensors), Dk and Dv 64 or 128 (whole
    /// 64-column blocks), and subgroups of 32.</summary>
    public bool DeltaRuleFragmentStagesFit(DType keys, FastWeightShape s) =>
        DeltaRuleUsesCoopMat(keys) && s.Steps % DeltaRuleChunkSize == 0 && s.KeyDim is 64 or 128 && s.ValueDim is 64 or 128
        && RunsSubgroupsOf32;

    /// <summary>Whether the WY backward of this problem runs on fragments.</summary>
    public bool DeltaRuleUsesWyBackwardFragments(DType keys, FastWeightShape s) => DeltaRuleWyBackwardFragments && DeltaRuleFragmentStagesFit(keys, s);

    /// <summary>Whether the per-chunk gradients of q and k of this problem run on fragments.</summary>
    public bool DeltaRuleUsesGradQKFragments(DType keys, FastWeightShape s) => DeltaRuleGradQKFragments && DeltaRuleFragmentStagesFit(keys, s);

    /// <summary>Whether, with the operands rounded to bf16 (<see cref="DeltaRuleCoopMatSplit"/> false), the
    /// intermediates that the later stages use only as rounded product operands (W, X, U', the chunk-start
    /// states, dU', the dS_C, dW) are stored as bf16 where every stage runs on fragments
    /// (<see cref="DeltaRuleUsesCompactIntermediates"/>): true by default; FASTWEIGHTS_DELTA_COMPACT=0, or
    /// false here, stores them as f32. Each is stored as the bf16 value (rounded to nearest) that every
    /// stage reading it would round it to, so the results do not change (fragment_types.glsl, COMPACT;
    /// DeltaRuleCompactTests); those tensors move half the bytes, and a saving forward keeps W, X, U' and
    /// the states in half the memory. U and dU'_local, which enter f32 sums, stay f32. The kernels read
    /// the compact tensors as raw 16-byte blocks (docs/ops.md, "Compact intermediates"). H200,
    /// B8 H16 bf16 (bench/results/2026-12-06-h200-run85.txt), f32 against compact, forward / forward+backward
    /// in ms: T2048 D64 0.385 / 1.468 against 0.400 / 1.336; D128 1.063 / 3.837 against 0.883 / 3.158;
    /// T8192 D64 1.433 / 5.631 against 1.481 / 5.130; D128 4.024 / 14.945 against 3.320 / 12.279. A plain
    /// forward at Dk = 64, which stores nothing for a backward, therefore keeps f32 intermediates.</summary>
    public bool DeltaRuleCompactIntermediates { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_COMPACT") != "0";

    /// <summary>Whether this problem stores its rounded-operand intermediates as bf16
    /// (<see cref="DeltaRuleCompactIntermediates"/>): the operands rounded, and stage 1, both state passes,
    /// the output stage, the q, k gradients and the WY backward all on fragments (no other kernel reads
    /// bf16 intermediates); for a plain forward (<paramref name="forBackward"/> false), only at Dk = 128,
    /// where it was faster (at Dk = 64 the compact stores cost the plain forward 4%).</summary>
    public bool DeltaRuleUsesCompactIntermediates(DType keys, FastWeightShape s, bool forBackward = true) =>
        DeltaRuleCompactIntermediates && !DeltaRuleCoopMatSplit && DeltaRuleBackwardFragments && (forBackward || s.KeyDim == 128)
        && DeltaRuleUsesWyFragments(keys, s) && DeltaRuleUsesStateFragments(keys, s) && DeltaRuleUsesOutputFragments(keys, s)
        && DeltaRuleUsesGradQKFragments(keys, s) && DeltaRuleUsesWyBackwardFragments(keys, s);

    /// <summary>Whether, with the operands rounded, the q, k gradients on fragments stage two blocks per
    /// workgroup barrier pair, the second in each shared region's lo plane, which rounded operands leave
    /// free (chunk_grad_qk_fragments.comp, MERGED_STAGING): half the barriers of its two walks over Dv,
    /// the same products in the same order (DeltaRuleMergedStagingTests: bit for bit). True by default;
    /// FASTWEIGHTS_DELTA_MERGED_STAGING=0, or false here, stages one block at a time. H200, B8 H16 T2048
    /// bf16 (bench/results/2026-12-06-h200-run86.txt): the kernel 243.6 → 230.5 us at D64 and 651.9 →
    /// 601.4 at D128; forward+backward (run 87) 2.833 → 2.777 ms at T2048 D128, 10.971 → 10.746 at
    /// T8192 D128.</summary>
    public bool DeltaRuleMergedStaging { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_MERGED_STAGING") != "0";

    /// <summary>Whether, with the operands rounded, the forward output stage on fragments stages S_0's blocks
    /// and U''s block of each 64 columns of Dv together, in the free lo planes (chunk_output_fragments.comp,
    /// its MERGED_STAGING): one barrier pair per 64 columns of Dv instead of one per block (2 against 6
    /// at Dk = 128). True by default; FASTWEIGHTS_DELTA_MERGED_OUTPUT=0, or false here, stages block by
    /// block. H100, B8 H16 bf16 D128 (bench/results/2026-12-07-h100-run90.txt, tools/gpu-host.sh
    /// delta-merged-output): the stage 1201.8 → 1159.5 us at T8192 (312.6 → 306.1 at T2048), the forward
    /// 3.459 → 3.415 ms at T8192. DeltaRuleMergedStagingTests checks it bit for bit.</summary>
    public bool DeltaRuleMergedOutputStaging { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_MERGED_OUTPUT") != "0";

    /// <summary>Whether, with the operands rounded, the WY backward on fragments walks dU's and dW's 64-column
    /// blocks in pairs, the second block and its V or K copy in the free lo planes
    /// (chunk_wy_backward_fragments.comp, its MERGED_STAGING): three workgroup barriers per pair instead of
    /// per block. True by default; FASTWEIGHTS_DELTA_MERGED_WY_BACKWARD=0, or false here, walks block by
    /// block. H100, B8 H16 bf16 D64 (bench/results/2026-12-07-h100-run90.txt, tools/gpu-host.sh
    /// delta-merged-wy): the stage 991.5 → 959.3 us at T8192 (264.9 → 258.4 at T2048).
    /// DeltaRuleMergedStagingTests checks it bit for bit.</summary>
    public bool DeltaRuleMergedWyBackwardStaging { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_MERGED_WY_BACKWARD") != "0";

    // The specialisation constants of a kernel on fragments: 0 SPLIT_OPERANDS (fragment_types.glsl: f32
    // operands as hi and lo bf16 parts, or rounded to bf16; DeltaRuleCoopMatSplit), 1 and 2 the state
    // passes' PROBE and EARLY_FETCH (0 here; StateFragmentsKernel sets them), 3 COMPACT (the intermediates
    // are bf16: the caller knows from their tensors, NewChunkedIntermediates having chosen), 4
    // MERGED_STAGING (the q, k gradients: DeltaRuleMergedStaging; the output stage:
    // DeltaRuleMergedOutputStaging; the WY backward: DeltaRuleMergedWyBackwardStaging; 0 for the others).
    // 5 HALF_IO (halfIo: the rule's outputs and gradients bf16, DeltaRuleStoresHalf), 6 the output stage's
    // STAGE_PROBE, 7 and 8 unused here (block_stream_probe.comp's), 9 LANE_STORES (DeltaRuleLaneStores),
    // 10 COMPACT_SUMMANDS (summands: the f32 summand the kernel writes or reads, dU'_local or the partial
    // dK, is bf16; the caller knows from that tensor, ChunkedDeltaRuleBackward having chosen with
    // DeltaRuleCompactSummands).
    // 11 REGISTER_SCORES (the output stage, the values gradient and the q, k gradients:
    // DeltaRuleRegisterScores), 12 READS_AHEAD (the output stage's merged staging: DeltaRuleOutputReadsAhead).
    // Trailing zeros after the first five are dropped, so a pipeline whose later constants are all
    // zero keeps the five constants (and cache key) it always had.
    private int[] FragmentSpecialization(bool compact, int probe = 0, bool earlyFetch = false, bool merged = false, bool halfIo = false, int stageProbe = 0,
        bool summands = false, bool registerScores = false, bool readsAhead = false)
    {
        if (halfIo && DeltaRuleCoopMatSplit) throw new InvalidOperationException("bf16 outputs and gradients are staged as they are, which takes rounded operands (DeltaRuleStoresHalf)");
        // StagedState (the state passes' stores from their staged copies) needs compact intermediates, which imply rounded operands.
        var lanes = compact && !DeltaRuleCoopMatSplit ? DeltaRuleLaneStores : DeltaRuleLaneStores & ~LaneStores.StagedState;
        if (summands && !compact) throw new InvalidOperationException("bf16 summands (DeltaRuleCompactSummands) come with compact intermediates only");
        int[] constants = [DeltaRuleCoopMatSplit ? 1 : 0, probe, earlyFetch ? 1 : 0, compact ? 1 : 0, merged ? 1 : 0, halfIo ? 1 : 0, stageProbe, 0, 0, (int)lanes,
            summands ? 1 : 0, registerScores ? 1 : 0, readsAhead ? 1 : 0];
        int length = constants.Length;
        while (length > 5 && constants[length - 1] == 0) length--;
        return constants[..length];
    }

    /// <summary>Which result tiles the stages on fragments write through the lanes rather than with coopMatStore
    /// (<see cref="LaneStores"/>; chunk_fragments.glsl STORE_RESULT and state_fragments.glsl COPY_STAGED_ROWS,
    /// specialisation constant 9; 7 and 8 are block_stream_probe.comp's). Same values either way
    /// (DeltaRuleLaneStoresTests). <see cref="LaneStores.Half"/> | <see cref="LaneStores.StagedState"/> by default:
    /// a bf16 accumulator fragment's store cost the output stage a third of its time
    /// (bench/results/2026-12-07-h100-run112.txt). On an H100 (run 115, B8 H16 T8192 D128, bf16 outputs)
    /// None / Half / Half+StagedState took the forward 3.154 / 3.005 / 2.685 ms and forward+backward
    /// 9.559 / 9.148 / 8.583 ms; StagedState took the forward state pass from 1284 to 953 us and the backward one
    /// from 2098 to 1863. Float added nothing (run 113). FASTWEIGHTS_DELTA_LANE_STORES sets it (a name list
    /// such as "Half, StagedState", or the bits as a number).</summary>
    public LaneStores DeltaRuleLaneStores { get; set; } =
        Enum.TryParse(Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_LANE_STORES"), ignoreCase: true, out LaneStores lanes) ? lanes : LaneStores.Half | LaneStores.StagedState;

    /// <summary>Whether, with compact intermediates, the ungated rule's backward also keeps two f32 summands
    /// as bf16 rounded to nearest: dU'_local (dU' = dU'_local + K dS_C^T) and, with bf16 gradients, the q, k
    /// gradients' partial dK, which the WY backward completes (specialisation constant 10,
    /// COMPACT_SUMMANDS in fragment_types.glsl). Each sum is still formed in f32; one of its addends
    /// carries one more bf16 rounding, as flash-linear-attention keeps dv and dk in bf16 (so, unlike the
    /// compact intermediates, this changes bits: DeltaRuleCompactSummandsTests holds it to the reference).
    /// On an H100 (run 117, B8 H16 T8192 D128, bf16 outputs) it took the values gradient from 829 to 695
    /// us, the backward state pass 1842 to 1753, the q, k gradients 1925 to 1826 and the WY backward 1705
    /// to 1561, the forward+backward from 9.226 to 8.763 ms. True by default (its tests and the delta-rule
    /// GPU tests with it on: runs 117-121); FASTWEIGHTS_DELTA_COMPACT_SUMMANDS=0, or false here, keeps the
    /// summands f32.</summary>
    public bool DeltaRuleCompactSummands { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_COMPACT_SUMMANDS") != "0";

    /// <summary>Whether, with the operands rounded, the output stage, the values gradient and the q, k
    /// gradients on fragments stage the causal scores P' = scale (Q K^T ⊙ M) (dP' in the q, k gradients)
    /// as fragments: each tile scaled and rounded to bf16 in its accumulator and stored with one
    /// coopMatStore, only the diagonal tiles then masked per element, instead of every tile's trip through
    /// the subgroup's scratch tile (chunk_fragments.glsl, STAGE_CAUSAL_TILE; specialisation constant 11).
    /// Same bits either way (DeltaRuleStagingFormTests). True by default; FASTWEIGHTS_DELTA_REGISTER_SCORES=0,
    /// or false here, keeps the scratch. H100, B8 H16 T8192 D128 bf16, bf16 outputs
    /// (bench/results/2026-12-07-h100-run126.txt, tools/gpu-host.sh staging-forms): the output stage 1064.2 →
    /// 865.1 us, the values gradient 703.0 → 503.6, the q, k gradients 1827.4 → 1537.7; forward 2.674 → 2.471
    /// ms, forward+backward 7.949 → 7.273.</summary>
    public bool DeltaRuleRegisterScores { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_REGISTER_SCORES") != "0";

    private bool UsesRegisterScores => DeltaRuleRegisterScores && !DeltaRuleCoopMatSplit;

    /// <summary>Whether the forward output stage's merged staging (<see cref="DeltaRuleMergedOutputStaging"/>,
    /// compact intermediates) reads each 64 columns of Dv's S_0 and U' blocks before the workgroup barrier
    /// that frees their places rather than after it (chunk_output_fragments.comp, READS_AHEAD;
    /// specialisation constant 12). The same values staged in the same places (DeltaRuleStagingFormTests).
    /// True by default; FASTWEIGHTS_DELTA_OUTPUT_READS_AHEAD=0, or false here, reads after the barrier. H100,
    /// B8 H16 T8192 D128 bf16, bf16 outputs (run 126): the output stage 1064.2 → 982.6 us alone, 865.1 → 743.5
    /// with the register scores (70 → 78 registers); forward 2.471 → 2.367 ms with them.</summary>
    public bool DeltaRuleOutputReadsAhead { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_OUTPUT_READS_AHEAD") != "0";

    // Specialisation constant 6 of chunk_output_fragments.comp (STAGE_PROBE): a timing experiment that leaves
    // out kinds of work (FASTWEIGHTS_STAGE_PROBE, a bit mask; 0, the default, leaves out nothing). Any other
    // value gives wrong results.
    private static readonly int StageProbe = int.TryParse(Environment.GetEnvironmentVariable("FASTWEIGHTS_STAGE_PROBE"), out int probe) ? probe : 0;

    private ComputeKernel FragmentKernel(string kernel, bool compact, bool merged = false, bool halfIo = false, int stageProbe = 0, bool summands = false,
        bool registerScores = false, bool readsAhead = false) =>
        Kernels.Get($"delta_rule/{kernel}", FragmentSpecialization(compact, merged: merged, halfIo: halfIo, stageProbe: stageProbe, summands: summands,
                registerScores: registerScores, readsAhead: readsAhead),
            requiredSubgroupSize: 32, fullSubgroups: true);

    // A tile kernel of the chunked rule, which reads and writes f32 only: DeltaRuleStoresHalf says yes only
    // where every stage runs on fragments, so bf16 outputs or gradients reaching one is a bug.
    private ComputeKernel TileKernelF32Only(string kernel, Tensor q, bool halfIo) =>
        halfIo ? throw new InvalidOperationException($"{kernel}: bf16 outputs or gradients reached a kernel that is not on fragments (DeltaRuleStoresHalf said yes)")
            : ChunkKernel(kernel, q);

    // chunk_output or chunk_values_grad for this problem (same push constants and workgroups either way).
    // summands: chunk_values_grad's dU'_local is bf16 (DeltaRuleCompactSummands).
    private ComputeKernel OutputKernel(string kernel, Tensor q, FastWeightShape s, bool compact, bool halfIo = false, bool summands = false) =>
        DeltaRuleUsesOutputFragments(q.DType, s)
            ? FragmentKernel(kernel + "_fragments", compact, merged: kernel == "chunk_output" && DeltaRuleMergedOutputStaging, halfIo: halfIo, stageProbe: StageProbe,
                summands: summands, registerScores: UsesRegisterScores,
                readsAhead: kernel == "chunk_output" && DeltaRuleMergedOutputStaging && DeltaRuleOutputReadsAhead && compact)   // compact implies rounded
            : summands ? throw new InvalidOperationException($"{kernel}: a bf16 dU'_local reached a kernel that is not on fragments") : TileKernelF32Only(kernel, q, halfIo);

    // The WY backward's kernel for this problem (same push constants and workgroups either way).
    // summands: the partial dK it completes is bf16 (DeltaRuleCompactSummands).
    private ComputeKernel WyBackwardKernel(Tensor q, FastWeightShape s, bool compact, bool halfIo = false, bool summands = false) =>
        DeltaRuleUsesWyBackwardFragments(q.DType, s)
            ? FragmentKernel("chunk_wy_backward_fragments", compact, merged: DeltaRuleMergedWyBackwardStaging, halfIo: halfIo, summands: summands)
            : summands ? throw new InvalidOperationException("chunk_wy_backward: a bf16 partial dK reached a kernel that is not on fragments") : TileKernelF32Only("chunk_wy_backward", q, halfIo);

    // The per-chunk q and k gradients' kernel for this problem (same push constants and workgroups either way).
    // summands: the partial dK it writes is bf16 (DeltaRuleCompactSummands).
    private ComputeKernel GradQKKernel(Tensor q, FastWeightShape s, bool compact, bool halfIo = false, bool summands = false) =>
        DeltaRuleUsesGradQKFragments(q.DType, s) ? FragmentKernel("chunk_grad_qk_fragments", compact, merged: DeltaRuleMergedStaging, halfIo: halfIo, summands: summands,
                registerScores: UsesRegisterScores)
            : summands ? throw new InvalidOperationException("chunk_grad_qk: a bf16 partial dK reached a kernel that is not on fragments") : TileKernelF32Only("chunk_grad_qk", q, halfIo);
}
