using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// shaders/delta_rule/chunk_state_fragments.comp and chunk_state_backward_fragments.comp: the chunked
// delta rule's two state passes with the state slice (or its gradient) held as tensor-core accumulator
// fragments and every global read of the next chunk in flight during the current one (the tile-product
// passes, chunk_state_tiles.comp and chunk_state_backward_tiles.comp, wait on their reads and stage
// every product through shared memory: about sixteen barriers a chunk against four to six here).
public sealed partial class VulkanBackend
{
    /// <summary>State rows per workgroup of the fragment state passes: 32 or 64 for both passes, or 0 (the
    /// default; FASTWEIGHTS_DELTA_FRAGMENT_ROWS sets it) for the backend's choice: 64 at Dk = 64; at
    /// Dk = 128, 32 for the forward pass and 64 for the backward one where the operands are rounded
    /// (<see cref="DeltaRuleCoopMatSplit"/> false) and Dv is a multiple of 64 (where the forward pass's _jit
    /// variant applies, <see cref="DeltaRuleStateFragmentsJit"/>, it takes 64 whatever this says; where the
    /// backward pass's _narrow variant applies, <see cref="DeltaRuleNarrowBackward"/>, it takes 32 rows in
    /// workgroups half as wide, at 0 only). The 64-row variants at
    /// Dk = 128 hold the hi planes alone (26 KiB of shared memory, where two planes would take 52 KiB)
    /// and halve the workgroups (256 at B8 H16 Dv 128), each reading the chunk's K, Q and W once for
    /// twice the rows. H200, B8 H16 T2048 D128 bf16 with compact intermediates
    /// (bench/results/2026-12-06-h200-run85.txt): backward pass 621.6 us with 64 rows against 963.2 with
    /// 32, forward pass 372.6 against 342.9; forward+backward 2.852 ms with 64 rows for both against
    /// 3.177 with 32.</summary>
    public int DeltaRuleStateFragmentRows
    {
        get => _fragmentRows;
        set => _fragmentRows = value is 0 or 32 or 64 ? value
            : throw new ArgumentOutOfRangeException(nameof(DeltaRuleStateFragmentRows), value, "the fragment state pass takes 32 or 64 state rows per workgroup (0: the backend's choice)");
    }

    private int _fragmentRows = int.TryParse(Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_FRAGMENT_ROWS"), out int rows) && rows is 32 or 64 ? rows : 0;

    // The state rows per workgroup of the forward (or backward) pass: what was asked where the variant
    // exists (64 at Dk = 128: the single-plane variants, rounded operands only), else the default.
    private int FragmentRows(FastWeightShape s, bool backward = false)
    {
        if (s.KeyDim != 128) return _fragmentRows == 0 ? 64 : _fragmentRows;
        bool wide = !DeltaRuleCoopMatSplit && (_fragmentRows == 64 || (_fragmentRows == 0 && backward && s.ValueDim % 64 == 0));
        return wide ? 64 : 32;
    }

    /// <summary>Whether the forward state pass of this problem runs chunk_state_fragments.comp: the
    /// tensor-core stages are in use (bf16 keys), <see cref="DeltaRuleStatePass"/> is Auto
    /// (FASTWEIGHTS_DELTA_STATE=tiles or sequential forces the others), T is a multiple of
    /// the chunk (the kernel reads and writes whole 16 x 16 fragments straight from the tensors), Dk is
    /// 64 or 128, Dv a multiple of the rows per workgroup, and the device runs subgroups of 32.</summary>
    public bool DeltaRuleUsesStateFragments(DType keys, FastWeightShape s) =>
        DeltaRuleStatePass == DeltaRuleStatePass.Auto && DeltaRuleUsesCoopMat(keys) && DeltaRuleCoopMatStages.Contains("chunk_state_tiles")
        && s.Steps % DeltaRuleChunkSize == 0 && s.KeyDim is 64 or 128 && s.ValueDim % FragmentRows(s) == 0
        && RunsSubgroupsOf32;

    /// <summary>Whether the forward fragment pass at Dk = 128 takes its _lean variant, which reads W's tiles
    /// right before use instead of a chunk ahead: true by default; FASTWEIGHTS_DELTA_FRAGMENT_LEAN=0 takes
    /// the prefetching one. The lean pass holds 115 registers per invocation instead of 147, so two of its
    /// workgroups share an SM, and took 543-544 us against 624-628 at B8 H16 T2048 D128 bf16 on the H100
    /// (bench/results/2026-12-06-h100-run60.txt and run62.txt). At Dk = 64 the prefetching variants already
    /// fit. A lean backward pass (K, Q and W read right before use: 185 registers instead of 243, still
    /// one workgroup per SM) was slower, 1167 against 1081 us (run 62), and has no variant.</summary>
    public bool DeltaRuleStateFragmentsLean { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_FRAGMENT_LEAN") != "0";

    /// <summary>Whether the forward fragment pass at Dk = 128 (ungated, rounded operands, Dv a multiple
    /// of 64) takes its _jit variant: 64 state rows per workgroup and no read issued a chunk ahead
    /// (chunk_state_fragments.comp, JIT_FETCH), at 126 registers per invocation, so two workgroups share
    /// an SM and the 256 workgroups of B8 H16 Dv 128 run in one wave on an H100. Its results are those of
    /// the 64-row lean pass with late reads, bit for bit. True by default (FASTWEIGHTS_DELTA_FRAGMENT_JIT=0
    /// takes the 32-row lean pass): B8 H16 D128 bf16 on the H100, 327.0 against 343.8 us at T2048 and
    /// 1273.1 against 1339.2 at T8192 (bench/results/2026-12-07-h100-run94.txt). The backward pass built
    /// the same way (every read right before its use) held 162 registers, still one workgroup per SM,
    /// and was slower, 678.9 against 613.3 us and 2689.9 against 2424.9 (same run). Built with 32 rows
    /// the two passes held 96 and 128 registers (three and two workgroups per SM, 512 workgroups) and
    /// were slower still: 392.5 / 1544.8 us forward, 782.8 / 3099.5 backward at T2048 / T8192
    /// (run 95). Only the 64-row forward variant was kept.</summary>
    public bool DeltaRuleStateFragmentsJit { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_FRAGMENT_JIT") != "0";

    /// <summary>Whether the gated rule's forward fragment pass takes the _jit variant where the ungated one
    /// would (<see cref="DeltaRuleStateFragmentsJit"/>; chunk_state_fragments.comp's JIT_FETCH with GATED,
    /// the variant chunk_state_fragments_k128_v64_jit_gated). Its results are those of the gated 64-row lean
    /// pass with late reads, bit for bit (DeltaRuleJitStatePassTests). FASTWEIGHTS_DELTA_GATED_JIT=0, or
    /// false here, keeps the 32-row lean pass for the gated rule.</summary>
    public bool DeltaRuleGatedStateFragmentsJit { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_GATED_JIT") != "0";

    /// <summary>Whether, with compact intermediates, U (stage 1's, the forward state pass's summand in
    /// U' = U - W S^T) is kept as bf16 rounded to nearest where the forward state pass is the _jit one
    /// (chunk_state_fragments.comp, COMPACT_SUMMANDS: U's block read as 16-byte pieces and staged, not as
    /// bf16 accumulator fragments from memory, which cost that pass 469 us at B8 H16 T8192 D128 in H100
    /// run 116). Moves bits within bf16 precision (DeltaRuleCompactSummandsTests). True by default: on an
    /// H100 (run 117, B8 H16 T8192 D128, bf16 outputs, compact summands on) it took the forward state pass
    /// from 950 to 867 us and stage 1 from 873 to 809, the forward from 2.866 to 2.730 ms;
    /// FASTWEIGHTS_DELTA_COMPACT_U=0, or false here, keeps U f32.</summary>
    public bool DeltaRuleCompactU { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_COMPACT_U") != "0";

    // Whether this problem's forward state pass (ungated, not fused) takes the _jit variant.
    private bool UsesJitForward(FastWeightShape s) =>
        DeltaRuleStateFragmentsJit && s.KeyDim == 128 && !DeltaRuleCoopMatSplit && s.ValueDim % 64 == 0;

    /// <summary>Whether the backward state pass at Dk = 128 (ungated and gated, rounded operands, Dv a multiple of 64,
    /// rows left to the backend: <see cref="DeltaRuleStateFragmentRows"/> 0) runs as workgroups of 4
    /// subgroups for 32 state rows (chunk_state_backward_fragments.comp's _narrow variant, SUBGROUPS=4)
    /// instead of 8 subgroups for 64 rows. Each subgroup holds the same tiles and reads as at 64 rows
    /// (about 250 registers an invocation), so a workgroup takes half the registers and two independent
    /// workgroups, each its own chain of chunks, share an SM where a 64-row one holds it alone; twice the
    /// workgroups read each chunk's K, Q and W. Every dS tile is formed by the same products in the same
    /// order, so the gradients are bit for bit those of the 64-row pass. True by default
    /// (FASTWEIGHTS_DELTA_NARROW_BACKWARD=0 takes the 64-row pass): B8 H16 D128 bf16 on the H100, the
    /// backward pass 532.2 against 613.8 us at T2048 and 2096.2 against 2424.7 at T8192, forward+backward
    /// 2.748 against 2.833 ms and 10.583 against 10.918 (bench/results/2026-12-07-h100-run99.txt).</summary>
    public bool DeltaRuleNarrowBackward { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_NARROW_BACKWARD") != "0";

    /// <summary>Whether the _narrow backward state pass reads K and Q as 16-byte pieces that each subgroup
    /// stages in a slot of shared memory of its own, instead of as fragments straight from the tensors
    /// (chunk_state_backward_fragments.comp's _narrow_raw variants, RAW_TOKENS). Same products in the same
    /// order: the same bits (DeltaRuleRawReadsTests). True by default (FASTWEIGHTS_DELTA_RAW_TOKENS=0, or
    /// false here, reads the fragments from the tensors): B8 H16 T8192 D128 bf16 with bf16 outputs on an
    /// H200, the backward state pass 1790.8 against 1151.2 us, forward+backward 8.264 against 7.674 ms
    /// (bench/results/2026-12-07-h200-run122.txt).</summary>
    public bool DeltaRuleRawTokenReads { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_RAW_TOKENS") != "0";

    /// <summary>Whether the _jit forward state pass reads K's block as 16-byte pieces put into shared memory
    /// (region1, free once the W S^T products are done) instead of each subgroup's 64 x 16 column as B
    /// fragments straight from the tensor (chunk_state_fragments.comp's _jit_raw variants, RAW_KEYS). Same
    /// products in the same order: the same bits (DeltaRuleRawReadsTests). True by default
    /// (FASTWEIGHTS_DELTA_RAW_KEYS=0, or false here, reads the fragments from the tensor): B8 H16 T8192
    /// D128 bf16 with bf16 outputs on an H200 (raw token reads off), the forward state pass 790.0 against
    /// 730.7 us, the forward 2.538 against 2.474 ms (bench/results/2026-12-07-h200-run122.txt).</summary>
    public bool DeltaRuleRawKeyReads { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_RAW_KEYS") != "0";

    /// <summary>Whether the backward state pass runs chunk_state_backward_fragments.comp where the forward
    /// one runs on fragments (<see cref="DeltaRuleUsesStateFragments"/>): true by default;
    /// FASTWEIGHTS_DELTA_BACKWARD_FRAGMENTS=0, or false here, keeps the tile pass for the backward.</summary>
    public bool DeltaRuleBackwardFragments { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_BACKWARD_FRAGMENTS") != "0";

    /// <summary>Whether the forward state pass on fragments issues each global read of the next chunk as
    /// soon as the registers it fills are free (true, the default; FASTWEIGHTS_DELTA_EARLY_FETCH=0 takes the
    /// order of the run-79 kernels; chunk_state_fragments.comp, EARLY_FETCH). Early took 7-9% off each
    /// forward pass at B8 H16 T2048 bf16 on the H100: saving D64 162.3 against 179.3 us, fused D64 241.4
    /// against 263.9, lean D128 506.8 against 544.1 (bench/results/2026-12-06-h100-run81.txt). The backward
    /// pass keeps the late order: reordered the same way it took 239.5 against 241.8 us at D64 and 1073.4
    /// against 1021.7 at D128 (same run).</summary>
    public bool DeltaRuleStateEarlyFetch { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_EARLY_FETCH") != "0";

    // Specialisation constant 1 of the state passes on fragments (state_fragments.glsl, PROBE): a timing
    // experiment that leaves out kinds of work (FASTWEIGHTS_DELTA_PROBE, a bit mask; 0, the default,
    // leaves out nothing). Any other value gives wrong results.
    private static readonly int StateProbe = int.TryParse(Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_PROBE"), out int probe) ? probe : 0;

    // chunk_state_fragments / chunk_state_backward_fragments for this problem and its workgroups along Dv
    // (same push constants as the tile passes).
    // fused: the forward pass's variant that also forms the outputs (chunk_state_fragments.comp, FUSED_OUTPUT).
    // compact: the intermediates are bf16 (DeltaRuleUsesCompactIntermediates); values: the backward pass's
    // variant that forms dU'_local from P' (chunk_state_backward_fragments.comp, FUSED_VALUES).
    // gated: the GATED build (the gated rule's recurrence from decayed keys and queries, DeltaRuleGated.cs).
    // summands: the backward pass's dU'_local is bf16 (DeltaRuleCompactSummands), or the forward pass's U
    // (DeltaRuleCompactU; the _jit variant only).
    private (ComputeKernel Kernel, uint Groups) StateFragmentsKernel(string kernel, DType keys, FastWeightShape s, bool compact, bool fused = false, bool values = false,
        bool gated = false, bool halfIo = false, bool summands = false)
    {
        var (variant, rows) = StateFragmentsVariant(kernel, s, fused, values, gated);
        if (summands && kernel == "chunk_state_fragments" && !variant.Contains("_jit", StringComparison.Ordinal))
            throw new InvalidOperationException($"{variant}: only the _jit forward state pass reads a bf16 U (DeltaRuleCompactU)");
        int[] specialization = FragmentSpecialization(compact, StateProbe, earlyFetch: kernel == "chunk_state_fragments" && DeltaRuleStateEarlyFetch, halfIo: halfIo,
            summands: summands);
        return (Kernels.Get(variant, specialization, requiredSubgroupSize: 32, fullSubgroups: true), Groups(s.ValueDim, rows));
    }

    // The variant of chunk_state_fragments / chunk_state_backward_fragments this problem runs, and its
    // state rows per workgroup.
    internal (string Variant, int Rows) StateFragmentsVariant(string kernel, FastWeightShape s, bool fused = false, bool values = false, bool gated = false)
    {
        bool backward = kernel == "chunk_state_backward_fragments";
        bool jit = !backward && !fused && (!gated || DeltaRuleGatedStateFragmentsJit) && UsesJitForward(s);
        bool narrow = backward && !values && DeltaRuleNarrowBackward && _fragmentRows == 0 && s.KeyDim == 128 && !DeltaRuleCoopMatSplit
            && s.ValueDim % 64 == 0;
        int rows = jit ? 64 : narrow ? 32 : FragmentRows(s, backward);
        string form = jit ? (DeltaRuleRawKeyReads ? "_jit_raw" : "_jit") : narrow ? (DeltaRuleRawTokenReads ? "_narrow_raw" : "_narrow") : DeltaRuleStateFragmentsLean && KernelCache.HasVariant($"delta_rule/{kernel}_k{s.KeyDim}_v{rows}_lean") ? "_lean" : "";
        return ($"delta_rule/{kernel}_k{s.KeyDim}_v{rows}{form}{(fused ? "_fused" : "")}{(values ? "_values" : "")}{(gated ? "_gated" : "")}", rows);
    }
}
