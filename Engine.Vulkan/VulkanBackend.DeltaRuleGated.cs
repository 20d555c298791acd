using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// The gated chunked delta rule (alpha given): the portable stages of VulkanBackend.DeltaRuleChunked.cs
// in their GATED builds (shaders/delta_rule/chunk_decay.glsl; docs/ops.md, "Vulkan gated chunked").
//   forward:  chunk_wy_gated (X, W = X diag(beta gamma) K, U) -> chunk_state_gated (U', chunk-start
//             states; S <- gamma_C S + (diag(tail) U')^T K) -> chunk_output_gated (O)
//   backward: the forward's first two stages again unless it kept them, chunk_values_grad_gated,
//             chunk_state_backward_gated, chunk_grad_qk_gated and chunk_wy_backward_gated (each also
//             writing its share of the log-decay gradient dg), chunk_decay_grad (dalpha from dg)
// Every intermediate is f32; the parallel stages' products are the tensor-core ones of
// chunk_tiles_coopmat.glsl for bf16 inputs on a device that has them (DeltaRuleGatedCoopMat, the
// default), else the portable f32 tile products; the output stage and the values gradient run on
// accumulator fragments where DeltaRuleGatedUsesOutputFragments says (chunk_output_fragments.comp, GATED); the state passes run on accumulator fragments where
// DeltaRuleGatedUsesStateFragments says (GATED builds of the ungated fragment passes, from the keys and
// queries chunk_decay_scale decays), else on the f32 register-tiled kernels (chunk_sequential.glsl).
public sealed partial class VulkanBackend
{
    /// <summary>Whether the gated rule's parallel stages (stage 1, the output stage, the values gradient,
    /// the q, k gradients, the WY backward) run their tile products on tensor cores for bf16 inputs where
    /// the ungated ones do (<see cref="DeltaRuleUsesCoopMat"/>; the `_gated_bf16_cm` builds, rounded or
    /// split operands as <see cref="DeltaRuleCoopMatSplit"/> says). True by default;
    /// FASTWEIGHTS_DELTA_GATED_COOPMAT=0, or false here, keeps the portable f32 products. On the H100
    /// (bench/results/2026-12-07-h100-run92.txt, B8 H16 bf16, forward / forward+backward ms, portable
    /// against tensor cores): T2048 D64 1.207 / 4.173 against 0.963 / 3.425, D128 3.785 / 11.970 against
    /// 3.124 / 10.751; T8192 D64 4.642 / 16.122 against 3.654 / 12.897, D128 14.866 / 47.134 against
    /// 12.222 / 42.497 (the state passes on the f32 kernels in both). DeltaRuleGatedTensorCoreTests holds
    /// it to 1e-2 norm-wise (passed there). It is also the condition for the state passes on fragments
    /// (<see cref="DeltaRuleGatedUsesStateFragments"/>).</summary>
    public bool DeltaRuleGatedCoopMat { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_GATED_COOPMAT") != "0";

    // The gated q, k gradients' shared memory beyond the ungated tensor-core stages': totals (GROUP
    // floats) and the decays (rowParts is the size of chunk_wy_backward's rowSums, already counted).
    private const int GatedCoopMatExtraBytes = 256 * 4 + GatedDecayBytes;

    /// <summary>Whether the gated rule on inputs of <paramref name="inputs"/> runs its parallel stages on
    /// tensor cores on this device (<see cref="DeltaRuleGatedCoopMat"/>).</summary>
    public bool DeltaRuleGatedUsesCoopMat(DType inputs) =>
        DeltaRuleGatedCoopMat && DeltaRuleUsesCoopMat(inputs) && Capabilities.MaxSharedMemoryBytes >= ChunkCoopMatSharedBytes + GatedCoopMatExtraBytes;

    // A parallel stage's gated build: tensor cores (256 invocations, the subgroup size pinned) or portable.
    private ComputeKernel GatedKernel(string kernel, Tensor q) => DeltaRuleGatedUsesCoopMat(q.DType)
        ? Kernels.Get($"delta_rule/{kernel}_gated_bf16_cm", [16 * Capabilities.SubgroupSize / 256, DeltaRuleCoopMatSplit ? 1 : 0, 0, 0],
            requiredSubgroupSize: Capabilities.SubgroupSize, fullSubgroups: true)
        : Kernels.Get($"delta_rule/{kernel}_gated_{q.DType.Name()}");

    /// <summary>Whether the gated rule's state passes on inputs of <paramref name="keys"/> run on accumulator
    /// fragments (the GATED builds of chunk_state_fragments.comp and, with <see cref="DeltaRuleBackwardFragments"/>,
    /// chunk_state_backward_fragments.comp): its parallel stages on tensor cores (<see cref="DeltaRuleGatedUsesCoopMat"/>)
    /// and the ungated fragment passes' conditions (<see cref="DeltaRuleUsesStateFragments"/>: T a multiple
    /// of 64, Dk 64 or 128, ...). They read the keys and queries decayed by chunk_decay_scale.comp (bf16,
    /// rounded to nearest) and f32 W, U', dU'_local; elsewhere the f32 register-tiled passes run.</summary>
    public bool DeltaRuleGatedUsesStateFragments(DType keys, FastWeightShape s) => DeltaRuleGatedUsesCoopMat(keys) && DeltaRuleUsesStateFragments(keys, s);

    // What the gated fragment state passes read beside the stages' tensors: keysToEnd = diag(tail) K,
    // queriesFrom = diag(gamma) Q (bf16; the backward pass only) and gamma_C per (b H + h, chunk)
    // (chunk_decay_scale.comp).
    internal sealed class DecayedOperands(VulkanBackend backend, FastWeightShape s, bool queries) : IDisposable
    {
        public Tensor KeysToEnd { get; } = Tensor.Empty(backend, s.Keys, DType.BF16);
        public Tensor? QueriesFrom { get; } = queries ? Tensor.Empty(backend, s.Keys, DType.BF16) : null;
        public Tensor ChunkDecays { get; } = Tensor.Empty(backend, new Shape(checked((int)(s.Batch * s.Heads * ChunkCount(s)))));
        public void Dispose() { KeysToEnd.Dispose(); QueriesFrom?.Dispose(); ChunkDecays.Dispose(); }
    }

    internal DecayedOperands DecayOperands(DeltaRuleProblem p, bool queries)
    {
        var s = p.Shape;
        // chunk_decay_scale.comp moves 8 bf16 at a time: the fragment passes' Dk (64, 128) and tensors
        // at multiples of 16 bytes (AlignedDeltaRuleCall) give it that
        if (s.KeyDim % 8 != 0 || p.Q.DType != DType.BF16 || p.K.DType != DType.BF16 || p.Q.ByteOffset % 16 != 0 || p.K.ByteOffset % 16 != 0)
            throw new InvalidOperationException($"chunk_decay_scale: needs bf16 q, k at multiples of 16 bytes and Dk a multiple of 8, got {p.Q.DType.Name()} q at byte {p.Q.ByteOffset}, {p.K.DType.Name()} k at byte {p.K.ByteOffset}, Dk {s.KeyDim}");
        var d = new DecayedOperands(this, s, queries);
        var push = new PushConstants(stackalloc byte[64]);
        push.Address(p.Q);
        push.Address(p.K);
        push.Address(p.Alpha!);
        push.Address(d.KeysToEnd);
        push.AddressOrZero(d.QueriesFrom);
        push.Address(d.ChunkDecays);
        push.Append(s.Steps);
        push.Append(s.Heads);
        push.Append(s.KeyDim);
        Dispatch(Kernels.Get("delta_rule/chunk_decay_scale"), push, ChunkCount(s), (uint)(s.Batch * s.Heads));
        return d;
    }

    // Shared memory the GATED builds add to the sequential stages: logAlpha and logDecay (chunk_decay.glsl).
    private const int GatedDecayBytes = 2 * DeltaRuleChunkSize * 4;

    private ComputeKernel GatedSequentialKernel(string kernel, Tensor k, FastWeightShape s, int slice) =>
        Kernels.Get($"delta_rule/{kernel}_gated_{k.DType.Name()}", SequentialSpecialization(slice, s.KeyDim));

    /// <summary>Whether the gated rule stores its rounded-operand intermediates (W, X, U', the chunk-start
    /// states, dU', the dS_C, dW) as bf16 where every gated stage runs on fragments, as the ungated rule
    /// does (<see cref="DeltaRuleCompactIntermediates"/>). On by default; FASTWEIGHTS_DELTA_GATED_COMPACT=0,
    /// or false here, keeps them f32. Every product reads them rounded to bf16 either way, so only the
    /// decays' gradient moves (its last-row term gamma_C &lt;dS_C, S_0&gt; sums the stored states:
    /// chunk_grad_qk_fragments.comp). H100 run 108, B8 H16 D128 bf16: forward+backward 17.41 → 12.47 ms
    /// at T8192, 4.44 → 3.20 at T2048 (the q, k gradients 6187 → 2922 us).</summary>
    public bool DeltaRuleGatedCompactIntermediates { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_GATED_COMPACT") != "0";

    /// <summary>Whether this gated problem stores its intermediates as bf16 (<see cref="DeltaRuleGatedCompactIntermediates"/>):
    /// the ungated rule's conditions (<see cref="DeltaRuleUsesCompactIntermediates"/>) and every gated stage on fragments.</summary>
    public bool DeltaRuleGatedUsesCompactIntermediates(DType keys, FastWeightShape s) =>
        DeltaRuleGatedCompactIntermediates && DeltaRuleUsesCompactIntermediates(keys, s)
        && DeltaRuleGatedUsesWyFragments(keys, s) && DeltaRuleGatedUsesStateFragments(keys, s) && DeltaRuleGatedUsesOutputFragments(keys, s)
        && DeltaRuleGatedUsesGradQKFragments(keys, s) && DeltaRuleGatedUsesWyBackwardFragments(keys, s);

    // The gated intermediates: W, U, U', the chunk-start states and (for a backward) X; f32, or W, X, U' and
    // the states bf16 where DeltaRuleGatedUsesCompactIntermediates says (U f32 either way).
    private ChunkedDeltaRuleSaved NewGatedIntermediates(DeltaRuleProblem p, bool withInverse, DeltaRuleProblem recorded)
    {
        var s = p.Shape;
        bool compact = DeltaRuleGatedUsesCompactIntermediates(p.K.DType, s);
        var stored = compact ? DType.BF16 : DType.F32;
        return new ChunkedDeltaRuleSaved
        {
            W = Tensor.Empty(this, s.Keys, stored), U = Tensor.Empty(this, s.Values),
            Inverse = withInverse ? Tensor.Empty(this, new Shape(checked((int)(s.Batch * s.Heads * ChunkCount(s))), DeltaRuleChunkSize, DeltaRuleChunkSize), stored) : null,
            UPrime = Tensor.Empty(this, s.Values, stored), States = Tensor.Empty(this, ChunkStates(s), stored),
            Problem = recorded, Compact = compact,
        };
    }

    // The forward's stages into the intermediates (ChunkedDeltaRuleForward keeps or disposes them); p: the
    // aligned problem (AlignedDeltaRuleCall).
    private void GatedChunkedForward(DeltaRuleProblem p, ChunkedDeltaRuleSaved saved, Tensor output, Tensor? finalState)
    {
        GatedWy(p, saved.W, saved.U, saved.Inverse);
        GatedState(p, saved.W, saved.U, saved.UPrime!, saved.States!, finalState);
        GatedOutput("chunk_output", p, p.Shape, saved.UPrime!, saved.States, output);
    }

    private void GatedChunkedBackward(DeltaRuleProblem p, DeltaRuleGradients g, ChunkedDeltaRuleSaved? kept)
    {
        var s = p.Shape;
        var alpha = p.Alpha!;
        var dAlpha = g.DAlpha ?? throw new InvalidOperationException("the gated backward needs dalpha (checked by DeltaRule.Backward)");
        using var recomputed = kept is null ? NewGatedIntermediates(p, withInverse: true, recorded: p) : null;
        var f = kept ?? recomputed!;
        // The decayed keys and queries of the state passes on fragments, formed once for the recomputed
        // forward pass and the backward one.
        using var decayed = DeltaRuleBackwardFragments && DeltaRuleGatedUsesStateFragments(p.Q.DType, s) ? DecayOperands(p, queries: true) : null;
        if (kept is null)
        {
            GatedWy(p, f.W, f.U, f.Inverse);
            GatedState(p, f.W, f.U, f.UPrime!, f.States!, null, decayed);
        }
        // dU' (first dU'_local = P^T dO, then completed in place by the state pass, or, compact, into a
        // bf16 tensor of its own), the dS_C, dW, and the log-decay gradient's parts: one per 64 columns of
        // Dk (chunk_grad_qk) and one for chunk_wy_backward.
        var stored = f.Compact ? DType.BF16 : DType.F32;
        using var dUPrimeLocal = Tensor.Empty(this, s.Values);
        using var dUPrimeCompact = f.Compact ? Tensor.Empty(this, s.Values, DType.BF16) : null;
        var dUPrime = dUPrimeCompact ?? dUPrimeLocal;
        using var dStates = Tensor.Empty(this, ChunkStates(s), stored);
        using var dW = Tensor.Empty(this, s.Keys, stored);
        int keyBlocks = (int)Groups(s.KeyDim, DeltaRuleChunkSize);
        using var decayParts = Tensor.Empty(this, new Shape(keyBlocks + 1, s.Batch, s.Steps, s.Heads));
        GatedOutput("chunk_values_grad", p, s, g.DOutput, null, dUPrimeLocal);
        GatedStateBackward(p, f.W, g.DOutput, dUPrimeLocal, dUPrime, dStates, g.DFinalState, g.DInitialState, decayed);
        GatedGradQK(p, g.DOutput, f.UPrime!, dUPrime, f.States!, dStates, g.DQ, g.DK, dW, decayParts);
        GatedWyBackward(p, f, dUPrime, dW, g, decayParts);

        var push = new PushConstants(stackalloc byte[64]);
        push.Address(alpha);
        push.Address(decayParts);
        push.Address(dAlpha);
        push.Append(s.Steps);
        push.Append(s.Heads);
        push.Append(keyBlocks + 1);
        Dispatch(Kernels.Get("delta_rule/chunk_decay_grad"), push, ChunkCount(s), (uint)(s.Batch * s.Heads));
    }

    // chunk_wy_gated: X = (I + strictly_lower(diag(beta) (K K^T ⊙ Gamma)))^-1, W = X diag(beta gamma) K, U = X diag(beta) V.
    private void GatedWy(DeltaRuleProblem p, Tensor w, Tensor u, Tensor? inverse)
    {
        var s = p.Shape;
        var push = new PushConstants(stackalloc byte[128]);
        WyOperands(ref push, p, w, u, inverse);
        if (DeltaRuleGatedUsesWyFragments(p.K.DType, s))
        {
            // chunk_wy_fragments.comp's push constants (no P' asked for), then alpha
            push.Address(p.Q);
            push.AddressOrZero(null);
            push.Append(p.Scale);
            push.Address(p.Alpha!);
            Dispatch(FragmentKernel("chunk_wy_fragments_gated", compact: w.DType == DType.BF16), push, ChunkCount(s), (uint)(s.Batch * s.Heads));
            return;
        }
        push.Address(p.Alpha!);
        Dispatch(GatedKernel("chunk_wy", p.Q), push, ChunkCount(s), (uint)(s.Batch * s.Heads));
    }

    /// <summary>Whether the gated rule's stage 1 runs on accumulator fragments (chunk_wy_fragments.comp's
    /// GATED build, `chunk_wy_fragments_gated`) where the ungated one does (<see cref="DeltaRuleUsesWyFragments"/>)
    /// and the gated stages run on tensor cores (<see cref="DeltaRuleGatedUsesCoopMat"/>), instead of the
    /// `_gated_bf16_cm` tile kernel. On by default (H100 run 104, T8192 D128: 2138 → 1030 us);
    /// FASTWEIGHTS_DELTA_GATED_WY_FRAGMENTS=0, or false here, keeps the tile kernel.</summary>
    public bool DeltaRuleGatedWyFragments { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_GATED_WY_FRAGMENTS") != "0";

    // chunk_wy_fragments.comp's shared memory (regions, scratch tiles, betas) and, gated, the decays.
    private const int WyFragmentsGatedSharedBytes = FragmentRegionsAndScratchBytes + 64 * 4 + GatedDecayBytes;

    /// <summary>Whether the gated rule's stage 1 of this problem runs on fragments (<see cref="DeltaRuleGatedWyFragments"/>).</summary>
    public bool DeltaRuleGatedUsesWyFragments(DType keys, FastWeightShape s) =>
        DeltaRuleGatedWyFragments && DeltaRuleGatedUsesCoopMat(keys) && DeltaRuleUsesWyFragments(keys, s)
        && Capabilities.MaxSharedMemoryBytes >= WyFragmentsGatedSharedBytes;

    // chunk_state_gated: U' = U - W S^T, S <- gamma_C S + (diag(tail) U')^T K, sequential over chunks;
    // on fragments (DeltaRuleGatedUsesStateFragments) from the decayed keys: 'decayed' where the caller
    // formed them already (the backward), else formed here (keys only).
    private void GatedState(DeltaRuleProblem p, Tensor w, Tensor u, Tensor uPrime, Tensor states, Tensor? finalState, DecayedOperands? decayed = null)
    {
        var s = p.Shape;
        var push = new PushConstants(stackalloc byte[128]);
        if (DeltaRuleGatedUsesStateFragments(p.K.DType, s))
        {
            using var formed = decayed is null ? DecayOperands(p, queries: false) : null;
            var d = decayed ?? formed!;
            StateOperands(ref push, d.KeysToEnd, s, p.InitialState, w, u, uPrime, states, finalState);
            push.Address(d.ChunkDecays);
            var (kernel, groups) = StateFragmentsKernel("chunk_state_fragments", p.K.DType, s, compact: w.DType == DType.BF16, gated: true);
            Dispatch(kernel, push, groups, (uint)(s.Batch * s.Heads));
            return;
        }
        int slice = StateSlice(s, GatedDecayBytes);
        StateOperands(ref push, p.K, s, p.InitialState, w, u, uPrime, states, finalState);
        push.Address(p.Alpha!);
        Dispatch(GatedSequentialKernel("chunk_state", p.K, s, slice), push, Groups(s.ValueDim, slice), (uint)(s.Batch * s.Heads));
    }

    /// <summary>Whether the gated rule's output stage and intra-chunk values gradient run on accumulator
    /// fragments (chunk_output_fragments.comp's GATED builds, `chunk_output_fragments_gated` and
    /// `chunk_values_grad_fragments_gated`) where the ungated ones do (<see cref="DeltaRuleUsesOutputFragments"/>)
    /// and the gated stages run on tensor cores (<see cref="DeltaRuleGatedUsesCoopMat"/>), instead of the
    /// `_gated_bf16_cm` tile kernels. True by default; FASTWEIGHTS_DELTA_GATED_OUTPUT_FRAGMENTS=0, or false
    /// here, keeps the tile kernels. H100, B8 H16 D128 bf16 (bench/results/2026-12-07-h100-run103.txt):
    /// output stage 1958.4 → 1438.2 us and values gradient 1160.8 → 758.1 at T8192; whole calls, forward /
    /// forward+backward, T2048 1.610 / 7.366 → 1.489 / 7.171 ms, T8192 6.246 / 29.241 → 5.698 / 28.295.
    /// DeltaRuleGatedTensorCoreTests holds it to 1e-2 norm-wise of the float64 reference.</summary>
    public bool DeltaRuleGatedOutputFragments { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_GATED_OUTPUT_FRAGMENTS") != "0";

    // The shared memory every kernel on chunk_fragments.glsl declares: two regions of 2 x 64 x 72 bf16
    // (hi and lo planes, rows padded by 8) and eight 16 x 20 f32 scratch tiles.
    private const int FragmentRegionsAndScratchBytes = 2 * 2 * 64 * 72 * 2 + 8 * 16 * 20 * 4;

    // chunk_output_fragments.comp's shared memory and, gated, the chunk's log alphas and log decays.
    private const int OutputFragmentsGatedSharedBytes = FragmentRegionsAndScratchBytes + GatedDecayBytes;

    /// <summary>Whether the gated rule's output stage and values gradient of this problem run on fragments
    /// (<see cref="DeltaRuleGatedOutputFragments"/>).</summary>
    public bool DeltaRuleGatedUsesOutputFragments(DType keys, FastWeightShape s) =>
        DeltaRuleGatedOutputFragments && DeltaRuleGatedUsesCoopMat(keys) && DeltaRuleUsesOutputFragments(keys, s)
        && Capabilities.MaxSharedMemoryBytes >= OutputFragmentsGatedSharedBytes;

    // chunk_output_gated: O = diag(gamma) scale Q S_0^T + P U'; chunk_values_grad_gated: dU'_local = P^T dO
    // (P = scale (Q K^T ⊙ Gamma ⊙ M)). On fragments where DeltaRuleGatedUsesOutputFragments says (f32
    // intermediates: compact off; same push constants and workgroups).
    private void GatedOutput(string kernel, DeltaRuleProblem p, FastWeightShape s, Tensor values, Tensor? states, Tensor result)
    {
        RequireF32(kernel + "_gated", result, kernel == "chunk_values_grad" ? values : null);
        var push = new PushConstants(stackalloc byte[128]);
        OutputOperands(ref push, p.Q, p.K, s, p.Scale, values, states, result);
        push.Address(p.Alpha!);
        // compact: U' and the states bf16 (the forward; the values gradient reads neither)
        var compute = DeltaRuleGatedUsesOutputFragments(p.K.DType, s) ? FragmentKernel($"{kernel}_fragments_gated", compact: states?.DType == DType.BF16)
            : GatedKernel(kernel, p.Q);
        Dispatch(compute, push, ChunkCount(s), (uint)(s.Batch * s.Heads));
    }

    // chunk_state_backward_gated: reverse over chunks, dU' = dU'_local + diag(tail) K dS_C^T (in place),
    // dS_0 = gamma_C dS_C + dO^T diag(gamma) Q' - dU'^T W.
    // On fragments (DeltaRuleGatedUsesStateFragments and DeltaRuleBackwardFragments: exactly where the
    // caller passes 'decayed', the keys and queries decayed by chunk_decay_scale).
    private void GatedStateBackward(DeltaRuleProblem p, Tensor w, Tensor dOutput, Tensor dUPrimeLocal, Tensor dUPrime, Tensor dStates, Tensor? dFinalState,
        Tensor? dInitialState, DecayedOperands? decayed)
    {
        var s = p.Shape;
        var push = new PushConstants(stackalloc byte[128]);
        if (decayed is { } d)
        {
            StateBackwardOperands(ref push, d.QueriesFrom!, d.KeysToEnd, w, s, p.Scale, dOutput, dUPrimeLocal, dStates, dFinalState, dInitialState);
            push.Address(dUPrime);   // dUPrimeLocal completed in place, or (compact) into a bf16 tensor
            push.AddressOrZero(null);
            push.Address(d.ChunkDecays);
            var (kernel, groups) = StateFragmentsKernel("chunk_state_backward_fragments", p.Q.DType, s, compact: w.DType == DType.BF16, gated: true);
            Dispatch(kernel, push, groups, (uint)(s.Batch * s.Heads));
            return;
        }
        if (!ReferenceEquals(dUPrime, dUPrimeLocal)) throw new InvalidOperationException("only the fragment backward state pass writes dU' apart");
        int slice = StateSlice(s, GatedDecayBytes);
        StateBackwardOperands(ref push, p.Q, p.K, w, s, p.Scale, dOutput, dUPrimeLocal, dStates, dFinalState, dInitialState);
        push.Address(p.Alpha!);
        Dispatch(GatedSequentialKernel("chunk_state_backward", p.Q, s, slice), push, Groups(s.ValueDim, slice), (uint)(s.Batch * s.Heads));
    }

    /// <summary>Whether the gated rule's q, k gradients run on accumulator fragments
    /// (chunk_grad_qk_fragments.comp's GATED build, `chunk_grad_qk_fragments_gated`) where the ungated ones
    /// do (<see cref="DeltaRuleUsesGradQKFragments"/>) and the gated stages run on tensor cores
    /// (<see cref="DeltaRuleGatedUsesCoopMat"/>), instead of the `_gated_bf16_cm` tile kernel. On by
    /// default (H100 run 104, T8192 D128: 14339 → 6096 us); FASTWEIGHTS_DELTA_GATED_GRAD_QK_FRAGMENTS=0, or
    /// false here, keeps the tile kernel.</summary>
    public bool DeltaRuleGatedGradQKFragments { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_GATED_GRAD_QK_FRAGMENTS") != "0";

    // chunk_grad_qk_fragments.comp's shared memory (as the output stage's) and, gated, the decays, the
    // per-row sums of the two subgroups of a tile row and the eight subgroups' last-row terms.
    private const int GradQKFragmentsGatedSharedBytes = FragmentRegionsAndScratchBytes + GatedDecayBytes + 64 * 2 * 4 + 8 * 4;

    /// <summary>Whether the gated rule's q, k gradients of this problem run on fragments
    /// (<see cref="DeltaRuleGatedGradQKFragments"/>).</summary>
    public bool DeltaRuleGatedUsesGradQKFragments(DType keys, FastWeightShape s) =>
        DeltaRuleGatedGradQKFragments && DeltaRuleGatedUsesCoopMat(keys) && DeltaRuleUsesGradQKFragments(keys, s)
        && Capabilities.MaxSharedMemoryBytes >= GradQKFragmentsGatedSharedBytes;

    // chunk_grad_qk_gated: dQ, dK (partial), dW and the log-decay gradient's part of each 64 columns of Dk.
    // On fragments where DeltaRuleGatedUsesGradQKFragments says: one workgroup per (chunk, 64 columns of
    // Dk) along x, as the ungated kernel on fragments; f32 intermediates (compact off).
    private void GatedGradQK(DeltaRuleProblem p, Tensor dOutput, Tensor uPrime, Tensor dUPrime, Tensor states, Tensor dStates,
        Tensor dq, Tensor dk, Tensor dW, Tensor decayParts)
    {
        var s = p.Shape;
        var push = new PushConstants(stackalloc byte[128]);
        GradQKOperands(ref push, p.Q, p.K, s, p.Scale, dOutput, uPrime, dUPrime, states, dStates, dq, dk, dW);
        push.Address(p.Alpha!);
        push.Address(decayParts);
        if (DeltaRuleGatedUsesGradQKFragments(p.K.DType, s))
            Dispatch(FragmentKernel("chunk_grad_qk_fragments_gated", compact: states.DType == DType.BF16), push, ChunkCount(s) * Groups(s.KeyDim, DeltaRuleChunkSize),
                (uint)(s.Batch * s.Heads));
        else Dispatch(GatedKernel("chunk_grad_qk", p.Q), push, ChunkCount(s), (uint)(s.Batch * s.Heads), Groups(s.KeyDim, DeltaRuleChunkSize));
    }

    // chunk_wy_backward_gated: dK (completed), dV, dbeta and the log-decay gradient's last part.
    private void GatedWyBackward(DeltaRuleProblem p, ChunkedDeltaRuleSaved f, Tensor dUPrime, Tensor dW, DeltaRuleGradients g, Tensor decayParts)
    {
        var s = p.Shape;
        var push = new PushConstants(stackalloc byte[128]);
        WyBackwardOperands(ref push, p, f.Inverse!, f.W, f.U, dUPrime, dW, g);
        push.Address(p.Alpha!);
        push.Address(decayParts);
        var kernel = DeltaRuleGatedUsesWyBackwardFragments(p.K.DType, s) ? FragmentKernel("chunk_wy_backward_fragments_gated", compact: f.Compact)
            : GatedKernel("chunk_wy_backward", p.Q);
        Dispatch(kernel, push, ChunkCount(s), (uint)(s.Batch * s.Heads));
    }

    /// <summary>Whether the gated rule's WY backward runs on accumulator fragments
    /// (chunk_wy_backward_fragments.comp's GATED build, `chunk_wy_backward_fragments_gated`) where the
    /// ungated one does (<see cref="DeltaRuleUsesWyBackwardFragments"/>) and the gated stages run on tensor
    /// cores (<see cref="DeltaRuleGatedUsesCoopMat"/>), instead of the `_gated_bf16_cm` tile kernel. On
    /// by default (H100 run 104, T8192 D128: 4165 → 2364 us); FASTWEIGHTS_DELTA_GATED_WY_BACKWARD_FRAGMENTS=0,
    /// or false here, keeps the tile kernel.</summary>
    public bool DeltaRuleGatedWyBackwardFragments { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_GATED_WY_BACKWARD_FRAGMENTS") != "0";

    // chunk_wy_backward_fragments.comp's shared memory (regions, scratch tiles, betas, the row sums of
    // dbeta) and, gated, the decays.
    private const int WyBackwardFragmentsGatedSharedBytes = FragmentRegionsAndScratchBytes + 64 * 4 + 64 * 2 * 4 + GatedDecayBytes;

    /// <summary>Whether the gated rule's WY backward of this problem runs on fragments
    /// (<see cref="DeltaRuleGatedWyBackwardFragments"/>).</summary>
    public bool DeltaRuleGatedUsesWyBackwardFragments(DType keys, FastWeightShape s) =>
        DeltaRuleGatedWyBackwardFragments && DeltaRuleGatedUsesCoopMat(keys) && DeltaRuleUsesWyBackwardFragments(keys, s)
        && Capabilities.MaxSharedMemoryBytes >= WyBackwardFragmentsGatedSharedBytes;
}
