using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// shaders/delta_rule/: the chunked (WY-form) delta rule, chunks of 64 tokens, every stage one
// dispatch over all chunks and (batch, head) pairs (docs/ops.md, "Vulkan chunked").
//   forward:  chunk_wy (X, W, U per chunk) -> chunk_state (chunk-start states, U'; sequential over
//             chunks, parallel over Dv slices) -> chunk_output (O)
//   backward: chunk_wy and chunk_state again (keeping X) unless the forward kept its intermediates
//             (DeltaRule.ForwardSaving), chunk_values_grad (P^T dO),
//             chunk_state_backward (dU', dS_C; reverse over chunks), chunk_grad_qk (dQ, dK, dW),
//             chunk_wy_backward (dK, dV, dbeta)
// q, k, v (and beta) may be f32, f16 or bf16; everything is computed in f32 and stored in f32, but for
// the intermediates that compact storage keeps as bf16 (DeltaRuleUsesCompactIntermediates).
public sealed partial class VulkanBackend
{
    /// <summary>Tokens per chunk (CHUNK in shaders/delta_rule/*).</summary>
    public const int DeltaRuleChunkSize = 64;

    /// <summary>Largest Dk and Dv of the chunked kernels (DKMAX in chunk_sequential.glsl).</summary>
    public const int DeltaRuleChunkedMaxHeadDim = 128;

    /// <summary>Auto picks the chunked form from this many tokens on (gated or not, head dims in range).</summary>
    public const int DeltaRuleChunkedFromSteps = 128;

    /// <summary>q, k, v and beta may be f16 or bf16: the chunked kernels read them directly, the
    /// recurrent ones from f32 copies.</summary>
    public bool DeltaRuleTakesHalfInputs => true;

    /// <summary>Whether this backend runs <paramref name="p"/> in the chunked form. An explicit
    /// Chunked request for head dims the kernels do not take is an argument error. The gated rule
    /// takes the same rule on the portable stages' gated builds (VulkanBackend.DeltaRuleGated.cs).</summary>
    public bool UsesChunkedDeltaRule(string op, DeltaRuleProblem p)
    {
        var s = p.Shape;
        bool dimsFit = s.KeyDim <= DeltaRuleChunkedMaxHeadDim && s.ValueDim <= DeltaRuleChunkedMaxHeadDim;
        if (p.Algorithm == DeltaRuleAlgorithm.Chunked && !dimsFit)
            throw new OpArgumentException(op, s.KeyDim > DeltaRuleChunkedMaxHeadDim ? "k" : "v",
                $"has head dimensions Dk = {s.KeyDim}, Dv = {s.ValueDim} (q, k {s.Keys}, v {s.Values}): the Vulkan chunked delta rule takes head dimensions up to {DeltaRuleChunkedMaxHeadDim}; use DeltaRuleAlgorithm.Recurrent or Auto");
        if (!dimsFit || s.Steps == 0 || s.Batch == 0 || s.Heads == 0) return false;
        return p.Algorithm switch
        {
            DeltaRuleAlgorithm.Chunked => true,
            DeltaRuleAlgorithm.Recurrent => false,
            _ => s.Steps >= DeltaRuleChunkedFromSteps,
        };
    }

    private static string ChunkVariant(string kernel, Tensor q) => $"delta_rule/{kernel}_{q.DType.Name()}";

    /// <summary>Whether the parallel stages of the chunked delta rule (chunk_wy, chunk_output,
    /// chunk_values_grad, chunk_grad_qk, chunk_wy_backward) multiply on tensor cores for bf16 inputs
    /// (chunk_tiles_coopmat.glsl): on by default where the device lists bf16 16x16x16 with f32
    /// accumulation; FASTWEIGHTS_DELTA_COOPMAT=0, or false here, keeps the portable f32 products.
    /// How f32 operands enter the products: <see cref="DeltaRuleCoopMatSplit"/>.</summary>
    public bool DeltaRuleCoopMat { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_COOPMAT") != "0";

    /// <summary>Whether the tensor-core products split f32 operands into two bf16 parts (true,
    /// FASTWEIGHTS_DELTA_COOPMAT=split: x y ~ x_hi y_hi + x_hi y_lo + x_lo y_hi, three multiplies, results
    /// within the portable f32 kernels' tolerance) or round them to bf16 to nearest (false, the default
    /// since 2026-12-06; FASTWEIGHTS_DELTA_COOPMAT=bf16 also asks for it): one multiply, f32
    /// accumulation, results within 1e-2 norm-wise of the float64 reference on the rounded inputs (the
    /// standards' bf16 tolerance and the precision flash-linear-attention keeps; docs/ops.md
    /// "Rounding"). Reaches the tile products (chunk_tiles_coopmat.glsl) and the kernels on fragments
    /// (fragment_types.glsl's SPLIT_OPERANDS; the 16 x 16 inverse in chunk_wy_fragments.comp splits either
    /// way). Rounded, H100 B8 H16 T2048 D64 bf16 took 0.393 ms forward and 1.521 ms forward+backward
    /// (bench/results/2026-12-06-h100-run83.txt) where split took 0.461 and 1.604 (run 82).</summary>
    public bool DeltaRuleCoopMatSplit { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_COOPMAT") == "split";

    /// <summary>Whether the tensor-core products read both 32-deep steps of a 64-deep product before
    /// multiplying the first (chunk_tiles_coopmat.glsl's PIPELINED): true or false for every tensor-core
    /// stage, or null (the default) for the measured choice per stage, which pipelines only the state
    /// passes (FASTWEIGHTS_DELTA_PIPELINE=0 or 1 sets it). On the H200 (B8 H16 T2048 bf16,
    /// bench/results/2026-12-01-h200-run38.txt) the extra registers cost the parallel stages their
    /// second workgroup per SM (chunk_wy 92 → 134 registers, 377 → 515 us at D64; chunk_grad_qk
    /// 487 → 774), while the state passes, one workgroup per SM in any case, got faster (forward
    /// 347 → 305 us at D64, 913 → 875 at D128; backward 456 → 401 at D64) but for the 128-invocation
    /// backward at D128, which ran out of registers (1304 → 2072 us).</summary>
    public bool? DeltaRulePipelined { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_PIPELINE") switch
    {
        "0" => false,
        "1" => true,
        _ => null,
    };

    private bool PipelinesProducts(string kernel, int group) =>
        DeltaRulePipelined ?? (kernel == "chunk_state_tiles" || (kernel == "chunk_state_backward_tiles" && group == 256));

    // chunk_tiles_coopmat.glsl's shared memory with the portable square: four stages of 320 uvec4
    // (the result reuses them), square, and chunk_wy_backward's 64 x 17 floats (the largest extra).
    private const int ChunkCoopMatSharedBytes = 4 * 320 * 16 + 64 * 65 * 4 + 64 * 17 * 4;

    /// <summary>Whether the chunked delta rule on inputs of <paramref name="inputs"/> uses the
    /// tensor-core products on this device (see <see cref="DeltaRuleCoopMat"/>).</summary>
    public bool DeltaRuleUsesCoopMat(DType inputs) =>
        DeltaRuleCoopMat && inputs == DType.BF16 && HasBf16Fragments
        && Capabilities.SubgroupSize >= 16 && 128 % Capabilities.SubgroupSize == 0
        && Capabilities.MaxSharedMemoryBytes >= ChunkCoopMatSharedBytes;

    // bf16 16 x 16 x 16 cooperative matrices with f32 accumulation, in use on this device: the fragments
    // every tensor-core kernel of the delta rule multiplies.
    private bool HasBf16Fragments =>
        Device.UseCooperativeMatrix && Capabilities.BFloat16CooperativeMatrix && Capabilities.HasCooperativeMatrix(16, 16, 16, ComponentType.BFloat16);

    // Subgroups of 32 invocations, natively or pinned through subgroup size control: the kernels on
    // accumulator fragments lay their tiles out for 32 lanes.
    private bool RunsSubgroupsOf32 =>
        Capabilities.SubgroupSize == 32 || (Capabilities.SubgroupSizeControl && Capabilities.MinSubgroupSize <= 32 && Capabilities.MaxSubgroupSize >= 32);

    /// <summary>Every tile-product stage that has a tensor-core variant.</summary>
    public static readonly IReadOnlySet<string> DeltaRuleCoopMatStagesAll =
        new HashSet<string> { "chunk_wy", "chunk_output", "chunk_values_grad", "chunk_grad_qk", "chunk_wy_backward", "chunk_state_tiles", "chunk_state_backward_tiles" };

    /// <summary>The stages on the tile products (the parallel ones and the tile-product state passes)
    /// that run their tensor-core variant when <see cref="DeltaRuleUsesCoopMat"/> holds; the others
    /// run the portable products. The default leaves out chunk_wy_backward: on the
    /// H200 at B8 H16 T2048 D64 bf16 its portable variant (double-buffered f32 products) took 798 us
    /// where the tensor-core one took 996, while chunk_wy (403 / 468 us), chunk_grad_qk (499 / 706)
    /// and chunk_output (260 / 290) are faster on tensor cores (bench/results/2026-12-01-h200-run25.txt
    /// and run26).</summary>
    public IReadOnlySet<string> DeltaRuleCoopMatStages { get; set; } =
        new HashSet<string> { "chunk_wy", "chunk_output", "chunk_values_grad", "chunk_grad_qk", "chunk_state_tiles", "chunk_state_backward_tiles" };

    // A stage on chunk_tiles.glsl: the tensor-core variant where it applies (subgroup size pinned,
    // 16 subgroup / group result tiles per subgroup, the workgroup 256 or 128 invocations: TileGroup),
    // else the portable one (256). keyBlocks > 0: the state passes' KEY_BLOCKS (specialisation
    // constant 2; the portable kernels declare no constants 0 and 1, so theirs are ignored).
    private ComputeKernel ChunkKernel(string kernel, Tensor q, int keyBlocks = 0)
    {
        bool coopMat = DeltaRuleUsesCoopMat(q.DType) && DeltaRuleCoopMatStages.Contains(kernel);
        // 128-invocation builds exist for the tensor-core variants but chunk_wy_backward's
        int group = coopMat && kernel != "chunk_wy_backward" && TileGroup(keyBlocks) == 128 ? 128 : 256;
        // Constants a kernel does not declare are ignored (KEY_BLOCKS outside the state passes, the
        // tensor-core ones in the portable kernels); they stay in the cache key.
        Span<int> spec = [coopMat ? 16 * Capabilities.SubgroupSize / group : 0, DeltaRuleCoopMatSplit ? 1 : 0, keyBlocks,
            coopMat && PipelinesProducts(kernel, group) ? 1 : 0];
        return coopMat
            ? Kernels.Get($"delta_rule/{kernel}_bf16_cm{(group == 128 ? "_g128" : "")}", spec, requiredSubgroupSize: Capabilities.SubgroupSize, fullSubgroups: true)
            : Kernels.Get(ChunkVariant(kernel, q), spec);
    }

    /// <summary>Invocations per workgroup of the tensor-core stages on chunk_tiles.glsl (every parallel
    /// stage but chunk_wy_backward, and the tile-product state passes; the portable products always
    /// run 256): 256, 128, or 0 (the default) to let the backend choose. 128
    /// holds the same 64 x 64 tile in half the invocations (8 rows of it each) with the same shared
    /// memory, so more chunks share an SM where registers bound them; on the H200 that made the
    /// parallel stages slower (their registers per invocation rose by 40-75%: chunk_wy 406 → 497 us
    /// at B8 H16 T2048 D64 bf16) and only the state passes at Dk > 64 faster (two 64 x 64 state tiles
    /// per invocation: 1166 → 973 us forward, 1638 → 1378 backward, at D128; their 256 build fits one
    /// workgroup per SM), so the default takes 128 there and 256 elsewhere
    /// (bench/results/2026-12-01-h200-run33.txt). FASTWEIGHTS_DELTA_GROUP sets it.</summary>
    public int DeltaRuleTileGroup
    {
        get => _deltaRuleTileGroup;
        set => _deltaRuleTileGroup = value is 0 or 128 or 256 ? value
            : throw new ArgumentOutOfRangeException(nameof(DeltaRuleTileGroup), value, "the chunked delta rule's tile stages run 128 or 256 invocations per workgroup (0: the backend's choice)");
    }

    private int _deltaRuleTileGroup = int.TryParse(Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_GROUP"), out int group) && group is 128 or 256 ? group : 0;

    // The workgroup size of a tensor-core tile stage (keyBlocks: the state passes' 64-column blocks of
    // Dk, else 0).
    private int TileGroup(int keyBlocks) =>
        DeltaRuleTileGroup != 0 ? DeltaRuleTileGroup : keyBlocks > 1 ? 128 : 256;

    /// <summary>Which kernels run the chunked delta rule's two sequential passes (the forward state
    /// pass and the backward one): the register-tiled FMA kernels of chunk_sequential.glsl, or the
    /// same passes built on the 64 x 64 tile products of the parallel stages (chunk_state_tiles.comp,
    /// chunk_state_backward_tiles.comp), which run on tensor cores where those do.
    /// FASTWEIGHTS_DELTA_STATE=sequential|tiles sets it; Auto picks per problem (<see cref="DeltaRuleUsesStateTiles"/>).</summary>
    public DeltaRuleStatePass DeltaRuleStatePass { get; set; } =
        Enum.TryParse<DeltaRuleStatePass>(Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_STATE"), ignoreCase: true, out var pass) ? pass : DeltaRuleStatePass.Auto;

    /// <summary>Whether the forward state pass (or, with <paramref name="backward"/>, the backward one)
    /// of a chunked delta rule on <paramref name="inputs"/> with head dimension <paramref name="keyDim"/>
    /// runs on the tile products. Auto, from the H200 (B8 H16 T2048 bf16): where the parallel stages
    /// run on tensor cores, both passes (they matched the register-tiled passes at D64 and took
    /// 0.48-0.67x their time at D128, runs 31 and 33); on the portable products, the forward pass
    /// at Dk > 64 only (1057 against 1976 us at D128; at D64 455 against 336, and the backward
    /// 2485 against 2468 at D128 and 706 against 503 at D64, run 36).</summary>
    public bool DeltaRuleUsesStateTiles(DType inputs, int keyDim, bool backward = false) => DeltaRuleStatePass switch
    {
        DeltaRuleStatePass.Tiles => true,
        DeltaRuleStatePass.Sequential => false,
        _ => (DeltaRuleUsesCoopMat(inputs) && DeltaRuleCoopMatStages.Contains(backward ? "chunk_state_backward_tiles" : "chunk_state_tiles"))
            || (!backward && keyDim > 64),
    };

    private static uint ChunkCount(FastWeightShape s) => Groups(s.Steps, DeltaRuleChunkSize);

    /// <summary>State rows per workgroup of the sequential stages of the chunked delta rule (64, 32
    /// or 16), or 0 (the default; FASTWEIGHTS_DELTA_SLICE sets it) to let the backend choose. A slice
    /// whose shared memory does not fit the device is replaced by the automatic choice.</summary>
    public int DeltaRuleStateSlice { get; set; } = int.TryParse(Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_SLICE"), out int slice) ? slice : 0;

    public static readonly IReadOnlyList<int> DeltaRuleStateSlices = [64, 32, 16];

    /// <summary>Whether the sequential stages with <paramref name="slice"/> state rows per workgroup
    /// fit this device's shared memory for head dimension <paramref name="keyDim"/>.</summary>
    public bool DeltaRuleStateSliceFits(int slice, int keyDim) => StateSliceFits(slice, keyDim, 0);

    // extraBytes: shared memory a build adds (the gated builds' decays).
    private bool StateSliceFits(int slice, int keyDim, int extraBytes) =>
        DeltaRuleStateSlices.Contains(slice) && SequentialSharedBytes(slice, keyDim) + extraBytes <= Capabilities.MaxSharedMemoryBytes;

    // State rows per workgroup of the sequential stages (chunk_sequential.glsl; the workgroup has 4
    // invocations per row): the largest whose shared memory fits the device and that still leaves
    // 128 workgroups to spread over the GPU (the pass over chunks is the critical path), else 16.
    // At B8 H16 T2048 D64 on the H200 the forward pass took 335, 409 and 824 us at slices 64, 32
    // and 16 (128, 256 and 512 workgroups; bench/results/2026-12-01-h200-run17.txt).
    private int StateSlice(FastWeightShape s, int extraBytes = 0)
    {
        if (StateSliceFits(DeltaRuleStateSlice, s.KeyDim, extraBytes)) return DeltaRuleStateSlice;
        foreach (int slice in DeltaRuleStateSlices)
            if (StateSliceFits(slice, s.KeyDim, extraBytes) && (long)s.Batch * s.Heads * Groups(s.ValueDim, slice) >= 128) return slice;
        return 16;
    }

    // Shared memory of chunk_sequential.glsl: stateT (DKMAX x SLICE), tokenTile (64 x SLICE),
    // stream (16 x (DKMAX + 4)), streamA (16 x SLICE), all f32.
    private static long SequentialSharedBytes(int slice, int keyDim)
    {
        int dkMax = SequentialKeyBlocks(keyDim) * 64;
        return 4L * (dkMax * slice + 64 * slice + 16 * (dkMax + 4) + 16 * slice);
    }

    private static int SequentialKeyBlocks(int keyDim) => keyDim <= 64 ? 1 : 2;

    // Specialisation of the sequential stages: group size, SLICE4, KBLOCKS.
    private static int[] SequentialSpecialization(int slice, int keyDim) => [4 * slice, slice / 4, SequentialKeyBlocks(keyDim)];

    /// <summary>The chunked forward's intermediates, kept for its backward (DeltaRule.ForwardSaving):
    /// W, U, the inverted chunk matrices X, U' and the chunk-start states, f32, or with
    /// <see cref="Compact"/> W, X, U' and the states bf16 (DeltaRuleUsesCompactIntermediates). It records
    /// the tensors they were computed from (k, v, beta, alpha, the initial state) and the shape, and the
    /// backward takes it only for those and with the same storage.</summary>
    internal sealed class ChunkedDeltaRuleSaved : DeltaRuleSaved
    {
        public required Tensor W, U;
        public required Tensor? UPrime, States;   // null only in a plain forward whose fused state pass formed the outputs
        public required Tensor? Inverse;   // X; null in a plain forward, which does not write it
        public required DeltaRuleProblem Problem;
        public required bool Compact;
        // P' = scale (Q K^T ⊙ M) from stage 1 (bf16 planes) where the backward forms dU'_local in its state
        // pass (DeltaRuleUsesFusedValuesGradient); else null. It depends on q and the scale, which nothing
        // else kept does, so the backward uses it only for the same q and scale.
        public Tensor? Scores;

        public Tensor? ScoresFor(DeltaRuleProblem p) => Scores is not null && ReferenceEquals(Problem.Q, p.Q) && Problem.Scale == p.Scale ? Scores : null;
        private bool _disposed;

        public void CheckFor(string op, DeltaRuleProblem p, bool compact)
        {
            if (_disposed) throw new ObjectDisposedException(nameof(DeltaRuleSaved), $"{op}: argument 'saved' was disposed");
            var kept = Problem;
            if (!ReferenceEquals(kept.K, p.K) || !ReferenceEquals(kept.V, p.V) || !ReferenceEquals(kept.Beta, p.Beta)
                || !ReferenceEquals(kept.InitialState, p.InitialState) || !ReferenceEquals(kept.Alpha, p.Alpha) || kept.Shape != p.Shape)
                throw new OpArgumentException(op, "saved", $"was kept by a forward of other tensors (k {kept.K.Shape}, v {kept.V.Shape}, initial state "
                    + $"{(kept.InitialState is null ? "none" : kept.InitialState.Shape.ToString())}); the backward needs the same k, v, beta, alpha and initial state (here k {p.K.Shape}, v {p.V.Shape})");
            if (Compact != compact)
                throw new OpArgumentException(op, "saved", $"holds {(Compact ? "bf16" : "f32")} intermediates (W {W.DType}, k {p.K.Shape}), but the backend's settings now store them as {(compact ? "bf16" : "f32")} "
                    + "(DeltaRuleCoopMatSplit, DeltaRuleCompactIntermediates or a fragment stage changed between the forward and the backward)");
        }

        public override void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var t in new[] { W, U, Inverse, UPrime, States, Scores }) t?.Dispose();
        }
    }

    // keep: also write X and return every intermediate (the caller disposes it; it records the caller's
    // problem, not the aligned copies the call may have made: AlignedDeltaRuleCall); else null.
    private ChunkedDeltaRuleSaved? ChunkedDeltaRuleForward(DeltaRuleProblem problem, Tensor output, Tensor? finalState, bool keep)
    {
        using var aligned = new AlignedDeltaRuleCall();
        var p = aligned.Problem(problem);
        output = aligned.Out(output);
        finalState = aligned.OutOrNull(finalState);
        bool gated = p.Alpha is not null;
        // A plain forward's fused state pass forms the outputs itself and keeps neither U' nor the states
        // (with both stored for the backward it was slower than the output stage with split operands:
        // DeltaRuleFusedOutput); the saving forward takes it only with DeltaRuleFusedSaving, storing both.
        bool fused = !gated && (!keep || DeltaRuleFusedSaving) && DeltaRuleUsesFusedOutput(p.Q.DType, p.Shape);
        var saved = gated ? NewGatedIntermediates(p, keep, recorded: problem)
            : NewChunkedIntermediates(p, keep, recorded: problem, withStates: !fused || keep, forBackward: keep);
        try
        {
            if (gated) GatedChunkedForward(p, saved, output, finalState);
            else if (fused)
            {
                // kept for the backward's state pass where it forms dU'_local itself
                var scores = NewScores(p.Shape);
                if (keep && DeltaRuleUsesFusedValuesGradient(p.Q.DType, p.Shape, p.Scale)) saved.Scores = scores;
                using var owned = saved.Scores is null ? scores : null;
                ChunkWy(p, saved.W, saved.U, saved.Inverse, scores);
                ChunkState(p.K, p.Shape, p.InitialState, saved.W, saved.U, saved.UPrime, saved.States, finalState, (p.Q, scores, output, p.Scale));
            }
            else
            {
                ChunkWy(p, saved.W, saved.U, saved.Inverse);
                ChunkState(p.K, p.Shape, p.InitialState, saved.W, saved.U, saved.UPrime, saved.States, finalState);
                ChunkOutput("chunk_output", p.Q, p.K, p.Shape, p.Scale, saved.UPrime!, saved.States, output, saved.Compact);
            }
            aligned.CopyOutputsBack();
        }
        catch
        {
            saved.Dispose();
            throw;
        }
        if (keep) return saved;
        saved.Dispose();
        return null;
    }

    // P' [B H chunks, 2, 64, 64] bf16 (hi and lo planes), stage 1's scores for the fused state passes.
    private Tensor NewScores(FastWeightShape s) =>
        Tensor.Empty(this, new Shape(checked((int)(s.Batch * s.Heads * ChunkCount(s))), 2, DeltaRuleChunkSize, DeltaRuleChunkSize), DType.BF16);

    // X [B H chunks, 64, 64] is only allocated when the backward will read it, U' and the states
    // unless a plain forward's fused state pass does without them.
    // Compact (DeltaRuleUsesCompactIntermediates; forBackward false: a plain forward's): W, X, U' and the
    // states bf16; U f32, or bf16 with DeltaRuleCompactU where the forward state pass is the _jit one.
    // Every later stage takes its COMPACT (and, for U, COMPACT_SUMMANDS) constant from these tensors.
    private ChunkedDeltaRuleSaved NewChunkedIntermediates(DeltaRuleProblem p, bool withInverse, DeltaRuleProblem? recorded = null, bool withStates = true,
        bool forBackward = true)
    {
        var s = p.Shape;
        bool compact = DeltaRuleUsesCompactIntermediates(p.K.DType, s, forBackward);
        var stored = compact ? DType.BF16 : DType.F32;
        return new ChunkedDeltaRuleSaved
        {
            W = Tensor.Empty(this, s.Keys, stored), U = Tensor.Empty(this, s.Values, compact && DeltaRuleCompactU && UsesJitForward(s) ? DType.BF16 : DType.F32),
            Inverse = withInverse ? Tensor.Empty(this, new Shape(checked((int)(s.Batch * s.Heads * ChunkCount(s))), DeltaRuleChunkSize, DeltaRuleChunkSize), stored) : null,
            UPrime = withStates ? Tensor.Empty(this, s.Values, stored) : null, States = withStates ? Tensor.Empty(this, ChunkStates(s), stored) : null,
            Problem = recorded ?? p, Compact = compact,
        };
    }

    // Without `kept`, the forward's stages run again first (keeping X).
    private void ChunkedDeltaRuleBackward(DeltaRuleProblem problem, DeltaRuleGradients gradients, ChunkedDeltaRuleSaved? kept)
    {
        using var aligned = new AlignedDeltaRuleCall();
        var p = aligned.Problem(problem);
        var g = aligned.Gradients(gradients);
        var s = p.Shape;
        if (p.Alpha is not null)
        {
            RequireF32("the gated backward", g.DOutput, g.DQ, g.DK, g.DV);
            GatedChunkedBackward(p, g, kept);
            aligned.CopyOutputsBack();
            return;
        }
        using var recomputed = kept is null ? NewChunkedIntermediates(p, withInverse: true) : null;
        var f = kept ?? recomputed!;
        Tensor w = f.W, u = f.U, inverse = f.Inverse!, uPrime = f.UPrime!, states = f.States!;
        // P' for the state pass that forms dU'_local itself (DeltaRuleUsesFusedValuesGradient): kept by the
        // saving forward, or formed by the recomputing stage 1; without it chunk_values_grad forms dU'_local.
        bool fusedValues = DeltaRuleUsesFusedValuesGradient(p.Q.DType, s, p.Scale);
        using var recomputedScores = kept is null && fusedValues ? NewScores(s) : null;
        var scores = recomputedScores ?? (fusedValues ? kept?.ScoresFor(problem) : null);
        // dU'_local (f32, or bf16 with compact summands) from the values gradient; the state pass writes dU'
        // in place, or, compact, into a bf16 tensor of its own, as it does the dS_C and the q, k gradients
        // dW. Compact with P', nothing holds dU'_local (the pass forms it in registers), so no tensor is
        // made for it.
        bool compact = f.Compact, summands = compact && DeltaRuleCompactSummands;
        var stored = compact ? DType.BF16 : DType.F32;
        using var dUPrimeCompact = compact ? Tensor.Empty(this, s.Values, stored) : null;
        using var dUPrimeWide = compact && scores is not null ? null : Tensor.Empty(this, s.Values, summands ? DType.BF16 : DType.F32);
        var dUPrime = dUPrimeCompact ?? dUPrimeWide!;
        var dUPrimeLocal = dUPrimeWide ?? dUPrime;   // not read where P' is given
        using var dStates = Tensor.Empty(this, ChunkStates(s), stored);
        using var dW = Tensor.Empty(this, s.Keys, stored);
        if (kept is null)
        {
            ChunkWy(p, w, u, inverse, recomputedScores);
            ChunkState(p.K, s, p.InitialState, w, u, uPrime, states, null);
        }
        if (scores is null) ChunkOutput("chunk_values_grad", p.Q, p.K, s, p.Scale, g.DOutput, null, dUPrimeLocal, compact);
        ChunkStateBackward(p.Q, p.K, w, s, p.Scale, g.DOutput, dUPrimeLocal, dUPrime, dStates, g.DFinalState, g.DInitialState, scores);
        // bf16 gradients (DeltaRuleStoresHalf): the q, k gradients' partial dk goes into a tensor of its
        // own (f32, or bf16 with compact summands), which the WY backward completes into the caller's bf16 dk.
        bool halfIo = g.DV.DType == DType.BF16;
        using var dkPartial = halfIo ? Tensor.Empty(this, s.Keys, summands ? DType.BF16 : DType.F32) : null;
        ChunkGradQK(p.Q, p.K, s, p.Scale, g.DOutput, uPrime, dUPrime, states, dStates, g.DQ, dkPartial ?? g.DK, dW);

        var push = new PushConstants(stackalloc byte[128]);
        WyBackwardOperands(ref push, p, inverse, halfIo ? g.DK : w, u, dUPrime, dW, halfIo ? g with { DK = dkPartial! } : g);
        Dispatch(WyBackwardKernel(p.Q, s, compact, halfIo, summands: dkPartial?.DType == DType.BF16), push, ChunkCount(s), (uint)(s.Batch * s.Heads));
        aligned.CopyOutputsBack();
    }

    // [B H chunks, Dv, Dk]: the state at the start of every chunk (or the gradient reaching its end).
    private static Shape ChunkStates(FastWeightShape s) => new(checked((int)(s.Batch * s.Heads * ChunkCount(s))), s.ValueDim, s.KeyDim);

    private static void AppendSizes(ref PushConstants push, FastWeightShape s)
    {
        push.Append(s.Steps);
        push.Append(s.Heads);
        push.Append(s.KeyDim);
        push.Append(s.ValueDim);
    }

    // The head of each stage's push-constant block, which every variant of the stage (tile products,
    // fragments, gated) declares first; variants append their own fields after it.
    private static void WyOperands(ref PushConstants push, DeltaRuleProblem p, Tensor w, Tensor u, Tensor? inverse)
    {
        push.Address(p.K);
        push.Address(p.V);
        push.Address(p.Beta);
        push.Address(w);
        push.Address(u);
        push.AddressOrZero(inverse);
        AppendSizes(ref push, p.Shape);
        push.Append((int)p.Beta.DType);
    }

    private static void StateOperands(ref PushConstants push, Tensor k, FastWeightShape s, Tensor? initialState, Tensor w, Tensor u, Tensor? uPrime, Tensor? states,
        Tensor? finalState)
    {
        push.Address(k);
        push.Address(w);
        push.Address(u);
        push.AddressOrZero(uPrime);
        push.AddressOrZero(states);
        push.AddressOrZero(initialState);
        push.AddressOrZero(finalState);
        AppendSizes(ref push, s);
    }

    private static void OutputOperands(ref PushConstants push, Tensor q, Tensor k, FastWeightShape s, float scale, Tensor values, Tensor? states, Tensor result)
    {
        push.Address(q);
        push.Address(k);
        push.Address(values);
        push.AddressOrZero(states);
        push.Address(result);
        AppendSizes(ref push, s);
        push.Append(scale);
    }

    private static void StateBackwardOperands(ref PushConstants push, Tensor q, Tensor k, Tensor w, FastWeightShape s, float scale, Tensor dOutput, Tensor dUPrimeLocal,
        Tensor dStates, Tensor? dFinalState, Tensor? dInitialState)
    {
        push.Address(q);
        push.Address(k);
        push.Address(w);
        push.Address(dOutput);
        push.Address(dUPrimeLocal);
        push.Address(dStates);
        push.AddressOrZero(dFinalState);
        push.AddressOrZero(dInitialState);
        AppendSizes(ref push, s);
        push.Append(scale);
    }

    private static void GradQKOperands(ref PushConstants push, Tensor q, Tensor k, FastWeightShape s, float scale, Tensor dOutput, Tensor uPrime, Tensor dUPrime,
        Tensor states, Tensor dStates, Tensor dq, Tensor dk, Tensor dW)
    {
        push.Address(q);
        push.Address(k);
        push.Address(dOutput);
        push.Address(uPrime);
        push.Address(dUPrime);
        push.Address(states);
        push.Address(dStates);
        push.Address(dq);
        push.Address(dk);
        push.Address(dW);
        AppendSizes(ref push, s);
        push.Append(scale);
    }

    private static void WyBackwardOperands(ref PushConstants push, DeltaRuleProblem p, Tensor inverse, Tensor w, Tensor u, Tensor dUPrime, Tensor dW, DeltaRuleGradients g)
    {
        push.Address(p.K);
        push.Address(p.V);
        push.Address(p.Beta);
        push.Address(inverse);
        push.Address(w);
        push.Address(u);
        push.Address(dUPrime);
        push.Address(dW);
        push.Address(g.DK);
        push.Address(g.DV);
        push.Address(g.DBeta);
        AppendSizes(ref push, p.Shape);
        push.Append((int)p.Beta.DType);
    }

    // chunk_wy.comp: W = X diag(beta) K, U = X diag(beta) V, X = A^-1 kept when 'inverse' is given;
    // on fragments also P' = scale (Q K^T ⊙ M) as bf16 parts when 'scores' is given (the fused state pass).
    private void ChunkWy(DeltaRuleProblem p, Tensor w, Tensor u, Tensor? inverse, Tensor? scores = null)
    {
        var s = p.Shape;
        if (scores is not null && (s.KeyDim != 64 || !DeltaRuleUsesWyFragments(p.Q.DType, s)))
            throw new InvalidOperationException("chunk_wy_fragments forms P' at Dk = 64 only");
        var push = new PushConstants(stackalloc byte[128]);
        WyOperands(ref push, p, w, u, inverse);
        push.Address(p.Q);
        push.AddressOrZero(scores);
        push.Append(p.Scale);
        bool compactU = u.DType == DType.BF16;   // DeltaRuleCompactU
        var kernel = DeltaRuleUsesWyFragments(p.Q.DType, s) ? FragmentKernel("chunk_wy_fragments", compact: w.DType == DType.BF16, summands: compactU)
            : compactU ? throw new InvalidOperationException("chunk_wy: a bf16 U reached a kernel that is not on fragments") : ChunkKernel("chunk_wy", p.Q);
        Dispatch(kernel, push, ChunkCount(s), (uint)(s.Batch * s.Heads));
    }

    // chunk_state.comp: chunk-start states and U' = U - W S^T, sequential over chunks. Half keys are
    // read directly: each stage's loads are in flight while the previous stage computes.
    // fused (the fragment pass only, DeltaRuleUsesFusedOutput): it also forms the outputs
    // O = scale Q S^T + P' U' from P' (ChunkWy's scores), and stores U' and the states only where given.
    private void ChunkState(Tensor k, FastWeightShape s, Tensor? initialState, Tensor w, Tensor u, Tensor? uPrime, Tensor? states, Tensor? finalState,
        (Tensor Q, Tensor Scores, Tensor Output, float Scale)? fused = null)
    {
        bool tiles = DeltaRuleUsesStateTiles(k.DType, s.KeyDim);
        int slice = tiles ? DeltaRuleChunkSize : StateSlice(s);
        var push = new PushConstants(stackalloc byte[128]);
        StateOperands(ref push, k, s, initialState, w, u, uPrime, states, finalState);
        if (fused is { } f)
        {
            if (!DeltaRuleUsesStateFragments(k.DType, s)) throw new InvalidOperationException("only the fragment state pass forms the outputs");
            push.Address(f.Q);
            push.Address(f.Scores);
            push.Address(f.Output);
            push.Append(f.Scale);
        }
        else if (uPrime is null || states is null) throw new InvalidOperationException("the unfused state pass stores U' and the chunk-start states");
        var (kernel, groups) = DeltaRuleUsesStateFragments(k.DType, s)
            ? StateFragmentsKernel("chunk_state_fragments", k.DType, s, compact: w.DType == DType.BF16, fused: fused is not null, halfIo: fused?.Output.DType == DType.BF16,
                summands: u.DType == DType.BF16)
            : u.DType == DType.BF16 ? throw new InvalidOperationException("chunk_state: a bf16 U reached a pass that is not on fragments") : (tiles ? ChunkKernel("chunk_state_tiles", k, SequentialKeyBlocks(s.KeyDim))
                : Kernels.Get(ChunkVariant("chunk_state", k), SequentialSpecialization(slice, s.KeyDim)), Groups(s.ValueDim, slice));
        Dispatch(kernel, push, groups, (uint)(s.Batch * s.Heads));
    }

    // chunk_output.comp: O = scale Q S_0^T + P U' (chunk_output) or dU'_local = P^T dO (chunk_values_grad).
    // compact: the intermediates are bf16 (U' and the states here; chunk_values_grad reads none of them).
    private void ChunkOutput(string kernel, Tensor q, Tensor k, FastWeightShape s, float scale, Tensor values, Tensor? states, Tensor result, bool compact)
    {
        var push = new PushConstants(stackalloc byte[128]);
        OutputOperands(ref push, q, k, s, scale, values, states, result);
        bool halfIo = (kernel == "chunk_output" ? result : values).DType == DType.BF16;   // O, or dO, bf16 (DeltaRuleStoresHalf)
        bool summands = kernel == "chunk_values_grad" && result.DType == DType.BF16;     // dU'_local bf16 (DeltaRuleCompactSummands)
        Dispatch(OutputKernel(kernel, q, s, compact, halfIo, summands), push, ChunkCount(s), (uint)(s.Batch * s.Heads));
    }

    // chunk_state_backward.comp: reverse over chunks, dU' = dU'_local + K dS_C^T, dS_0 = dS_C + dO^T Q' - dU'^T W;
    // every dS_C kept; dInitial the last dS. dU' goes into dUPrime: dUPrimeLocal itself, or a compact bf16
    // tensor (the fragment pass only, which reads the address appended after the sizes).
    // scores (the fragment pass at Dk = 64 only, its _values variants): stage 1's P', from which the pass
    // forms dU'_local = P'^T dO itself; dUPrimeLocal is then written (as dU' where it is dUPrime), not read.
    private void ChunkStateBackward(Tensor q, Tensor k, Tensor w, FastWeightShape s, float scale, Tensor dOutput, Tensor dUPrimeLocal, Tensor dUPrime,
        Tensor dStates, Tensor? dFinalState, Tensor? dInitialState, Tensor? scores = null)
    {
        bool fragments = DeltaRuleBackwardFragments && DeltaRuleUsesStateFragments(q.DType, s);
        if (!ReferenceEquals(dUPrime, dUPrimeLocal) && !fragments) throw new InvalidOperationException("only the fragment backward state pass writes dU' apart");
        if (scores is not null && !(fragments && s.KeyDim == 64)) throw new InvalidOperationException("only the fragment backward state pass at Dk = 64 forms dU'_local");
        if (dOutput.DType == DType.BF16 && !fragments) throw new InvalidOperationException("only the fragment backward state pass reads a bf16 dO (DeltaRuleStoresHalf)");
        bool tiles = DeltaRuleUsesStateTiles(q.DType, s.KeyDim, backward: true);
        int slice = tiles ? DeltaRuleChunkSize : StateSlice(s);
        var push = new PushConstants(stackalloc byte[128]);
        StateBackwardOperands(ref push, q, k, w, s, scale, dOutput, dUPrimeLocal, dStates, dFinalState, dInitialState);
        push.Address(dUPrime);
        push.AddressOrZero(scores);
        bool halfIo = dOutput.DType == DType.BF16;   // DeltaRuleStoresHalf
        bool summands = scores is null && dUPrimeLocal.DType == DType.BF16;   // DeltaRuleCompactSummands
        var (kernel, groups) = fragments ? StateFragmentsKernel("chunk_state_backward_fragments", q.DType, s, compact: w.DType == DType.BF16, values: scores is not null, halfIo: halfIo,
                summands: summands)
            : summands ? throw new InvalidOperationException("chunk_state_backward: a bf16 dU'_local reached a pass that is not on fragments") : (tiles ? ChunkKernel("chunk_state_backward_tiles", q, SequentialKeyBlocks(s.KeyDim))
                : Kernels.Get(ChunkVariant("chunk_state_backward", q), SequentialSpecialization(slice, s.KeyDim)), Groups(s.ValueDim, slice));
        Dispatch(kernel, push, groups, (uint)(s.Batch * s.Heads));
    }

    // chunk_grad_qk.comp: dQ = scale (dO S_0 + dP K), dK = dP^T Q' + U' dS_C, dW = -dU' S_0.
    private void ChunkGradQK(Tensor q, Tensor k, FastWeightShape s, float scale, Tensor dOutput, Tensor uPrime, Tensor dUPrime, Tensor states, Tensor dStates,
        Tensor dq, Tensor dk, Tensor dW)
    {
        var push = new PushConstants(stackalloc byte[128]);
        GradQKOperands(ref push, q, k, s, scale, dOutput, uPrime, dUPrime, states, dStates, dq, dk, dW);
        // dO and dq bf16 (DeltaRuleStoresHalf); dk here is the partial, f32, or bf16 with them (DeltaRuleCompactSummands)
        bool halfIo = dOutput.DType == DType.BF16, summands = dk.DType == DType.BF16;
        if (dq.DType != dOutput.DType || (summands && !halfIo)) throw new InvalidOperationException("chunk_grad_qk takes dO and dq of one dtype, and a bf16 partial dk only with them");
        var kernel = GradQKKernel(q, s, compact: states.DType == DType.BF16, halfIo, summands);
        // The fragment kernel takes (chunk, 64-column block of Dk) along x, the tile kernel the blocks along z.
        if (DeltaRuleUsesGradQKFragments(q.DType, s)) Dispatch(kernel, push, ChunkCount(s) * Groups(s.KeyDim, DeltaRuleChunkSize), (uint)(s.Batch * s.Heads));
        else Dispatch(kernel, push, ChunkCount(s), (uint)(s.Batch * s.Heads), Groups(s.KeyDim, DeltaRuleChunkSize));
    }

    /// <summary>The problem with f32 copies of half-precision q, k, v and beta, for the recurrent
    /// kernels (which read f32); disposing it frees the copies.</summary>
    private sealed class WidenedDeltaRule : IDisposable
    {
        private readonly List<Tensor> _owned = [];
        public DeltaRuleProblem Problem { get; }

        public WidenedDeltaRule(DeltaRuleProblem p)
        {
            Tensor Widen(Tensor t)
            {
                if (t.DType == DType.F32) return t;
                var wide = Pointwise.Convert(t, DType.F32);
                _owned.Add(wide);
                return wide;
            }
            Problem = p with { Q = Widen(p.Q), K = Widen(p.K), V = Widen(p.V), Beta = Widen(p.Beta) };
        }

        public static bool Needed(DeltaRuleProblem p) => p.Q.DType != DType.F32 || p.Beta.DType != DType.F32;

        public void Dispose()
        {
            foreach (var t in _owned) t.Dispose();
        }
    }
}
