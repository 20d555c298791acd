using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// shaders/fast_weights/recurrent.comp: the recurrent delta rule and sum rule with the state in
// registers, one workgroup per (batch, head, block of state rows).
public sealed partial class VulkanBackend : IDeltaRuleOps, ILinearAttentionOps
{
    private const int RecurrentColumnsPerLane = 32; // KMAX in recurrent.comp

    /// <summary>Checkpoint interval of the recurrent backward: the forward keeps S every C steps, the
    /// backward rebuilds C states at a time into a scratch of C states per (batch, head).</summary>
    private const int RecurrentCheckpointInterval = 16;

    /// <summary>Chunked (VulkanBackend.DeltaRuleChunked.cs) or recurrent, by the problem's algorithm
    /// (see UsesChunkedDeltaRule); the recurrent kernels read f32, so f16/bf16 inputs are widened first.</summary>
    public void DeltaRuleForward(DeltaRuleProblem problem, Tensor output, Tensor? finalState)
    {
        if (UsesChunkedDeltaRule("DeltaRuleForward", problem)) { ChunkedDeltaRuleForward(problem, output, finalState, keep: false); return; }
        RequireF32("the recurrent forward", output);
        using var widened = WidenedDeltaRule.Needed(problem) ? new WidenedDeltaRule(problem) : null;
        var p = widened?.Problem ?? problem;
        RecurrentForward("delta", p.Q, p.K, p.V, p.Beta, p.Alpha, p.InitialState, finalState, output, null, null, p.Shape, p.Scale, 0f, false);
    }

    /// <summary>The chunked forward keeps its intermediates for the backward (see
    /// <see cref="ChunkedDeltaRuleSaved"/>); the recurrent one keeps nothing.</summary>
    public DeltaRuleSaved? DeltaRuleForwardSaving(DeltaRuleProblem problem, Tensor output, Tensor? finalState)
    {
        if (!UsesChunkedDeltaRule("DeltaRuleForward", problem)) { DeltaRuleForward(problem, output, finalState); return null; }
        return ChunkedDeltaRuleForward(problem, output, finalState, keep: true);
    }

    public void DeltaRuleBackward(DeltaRuleProblem problem, DeltaRuleGradients g, DeltaRuleSaved? saved)
    {
        const string op = "DeltaRuleBackward";
        if (saved is null) { DeltaRuleBackward(problem, g); return; }
        if (saved is not ChunkedDeltaRuleSaved chunked)
            throw new OpArgumentException(op, "saved", $"is a {saved.GetType().Name}, not what this Vulkan backend's forward kept");
        bool compact = problem.Alpha is null ? DeltaRuleUsesCompactIntermediates(problem.K.DType, problem.Shape)
            : DeltaRuleGatedUsesCompactIntermediates(problem.K.DType, problem.Shape);
        chunked.CheckFor(op, problem, compact);   // only chunked runs keep anything, and never empty ones
        ChunkedDeltaRuleBackward(problem, g, chunked);
    }

    /// <summary>Reruns the forward keeping checkpoints, then recurrent_backward.comp: one workgroup per
    /// (batch, head) holding every state row (Dv x lanes invocations, at most the device's limit).</summary>
    public void DeltaRuleBackward(DeltaRuleProblem problem, DeltaRuleGradients g)
    {
        const string op = "DeltaRuleBackward";
        var s = problem.Shape;
        if (s.Batch == 0 || s.Heads == 0 || s.Steps == 0) { ZeroGradients(g); return; }
        if (UsesChunkedDeltaRule(op, problem)) { ChunkedDeltaRuleBackward(problem, g, null); return; }
        RequireF32("the recurrent backward", g.DOutput, g.DQ, g.DK, g.DV);
        using var widened = WidenedDeltaRule.Needed(problem) ? new WidenedDeltaRule(problem) : null;
        var p = widened?.Problem ?? problem;
        int lanes = RecurrentLanes(op, s.KeyDim, s.ValueDim);
        if (!Capabilities.SharedFloatAtomicAdd)
            throw new NotSupportedException($"{op}: {Capabilities.Name} lacks shared-memory float atomics (VK_EXT_shader_atomic_float), which the Vulkan backward uses; run the backward on the CPU backend");
        if (s.ValueDim * lanes > Capabilities.MaxWorkgroupInvocations || s.KeyDim > 1024)
            throw new OpArgumentException(op, "v", $"{s.Values}: the Vulkan backward holds all {s.ValueDim} state rows in one workgroup ({s.ValueDim} x {lanes} lanes > {Capabilities.MaxWorkgroupInvocations} invocations)");
        int interval = RecurrentCheckpointInterval, intervals = (s.Steps + interval - 1) / interval;
        long heads = (long)s.Batch * s.Heads;
        using var checkpoints = Tensor.Empty(this, new Shape(checked((int)(heads * intervals)), s.ValueDim, s.KeyDim));
        using var scratch = Tensor.Empty(this, new Shape(checked((int)(heads * interval)), s.ValueDim, s.KeyDim));
        using var output = Tensor.Empty(this, s.Values);
        RecurrentForward("delta", p.Q, p.K, p.V, p.Beta, p.Alpha, p.InitialState, null, output, null, null, s, p.Scale, 0f, false, checkpoints, interval);
        var kernel = Kernels.Get("fast_weights/recurrent_backward", [s.ValueDim * lanes, lanes]);
        var push = new PushConstants(stackalloc byte[160]);
        push.Address(p.Q);
        push.Address(p.K);
        push.Address(p.V);
        push.Address(p.Beta);
        push.AddressOrZero(p.Alpha);
        push.Address(g.DOutput);
        push.AddressOrZero(g.DFinalState);
        push.Address(checkpoints);
        push.Address(scratch);
        push.Address(g.DQ);
        push.Address(g.DK);
        push.Address(g.DV);
        push.Address(g.DBeta);
        push.AddressOrZero(g.DAlpha);
        push.AddressOrZero(g.DInitialState);
        push.Append(s.Steps);
        push.Append(s.Heads);
        push.Append(s.KeyDim);
        push.Append(s.ValueDim);
        push.Append(p.Scale);
        push.Append(interval);
        if (push.Bytes.Length > Kernels.PushConstantBytes)
            throw new NotSupportedException($"{op}: needs {push.Bytes.Length} bytes of push constants; {Capabilities.Name} offers {Kernels.PushConstantBytes}");
        Dispatch(kernel, push, (uint)heads);
    }

    private void ZeroGradients(DeltaRuleGradients g)
    {
        foreach (var t in new[] { g.DQ, g.DK, g.DV, g.DBeta, g.DAlpha }) if (t is not null) Fill(t, 0f);
        CopyOrZero(g.DFinalState, g.DInitialState);
    }

    public void LinearAttentionForward(LinearAttentionProblem p, Tensor output, Tensor? finalState, Tensor? finalNormaliser)
    {
        if (UsesChunkedLinearAttention(p)) { ChunkedLinearAttentionForward(p, output, finalState); return; }
        // With the normaliser updated in place by several row blocks, a block could read z after
        // another block wrote it: give the kernel a private copy of the initial z then.
        int lanes = RecurrentLanes("LinearAttentionForward", p.Shape.KeyDim, p.Shape.ValueDim);
        bool severalBlocks = p.Shape.ValueDim * lanes > Math.Min(Capabilities.MaxWorkgroupInvocations, 1024);
        Tensor? z0 = p.InitialNormaliser;
        using var copy = severalBlocks && z0 is not null && finalNormaliser is not null && ReferenceEquals(z0.Storage, finalNormaliser.Storage) ? z0.To(this) : null;
        RecurrentForward("sum", p.Q, p.K, p.V, null, null, p.InitialState, finalState, output, copy ?? z0, finalNormaliser, p.Shape, p.Scale, p.Epsilon, p.Normalise);
    }

    /// <summary>Chunked (unnormalised, VulkanBackend.LinearAttentionChunked.cs) or
    /// recurrent_sum_backward.comp in two dispatches: phase 0 walks forward rebuilding S_t and
    /// z_t (dq and the per-token n_t, dn_t), phase 1 walks backward carrying dS and dz (dk, dv and
    /// the initial-state gradients).
    /// When the state rows need several workgroups, dq, dk and dz_0 are summed over them afterwards.</summary>
    public void LinearAttentionBackward(LinearAttentionProblem p, LinearAttentionGradients g)
    {
        var s = p.Shape;
        const string op = "LinearAttentionBackward";
        if (s.Batch == 0 || s.Heads == 0) return;
        if (UsesChunkedLinearAttention(p)) { ChunkedLinearAttentionBackward(p, g); return; }
        if (s.Steps == 0)
        {
            foreach (var t in new[] { g.DQ, g.DK, g.DV }) Fill(t, 0f);
            CopyOrZero(g.DFinalState, g.DInitialState);
            CopyOrZero(p.Normalise ? g.DFinalNormaliser : null, g.DInitialNormaliser);
            return;
        }
        int lanes = RecurrentLanes(op, s.KeyDim, s.ValueDim);
        if (!Capabilities.SharedFloatAtomicAdd)
            throw new NotSupportedException($"{op}: {Capabilities.Name} lacks shared-memory float atomics (VK_EXT_shader_atomic_float), which the Vulkan backward uses; run the backward on the CPU backend");
        if (s.KeyDim > 1024) throw new OpArgumentException(op, "k", $"{s.Keys}: the Vulkan backward takes key dimensions up to 1024");
        int rowsPerGroup = Math.Max(1, Math.Min(s.ValueDim, Math.Min(Capabilities.MaxWorkgroupInvocations, 1024) / lanes));
        int blocks = (s.ValueDim + rowsPerGroup - 1) / rowsPerGroup;
        long tokens = (long)s.Batch * s.Steps * s.Heads;
        using var scalars = Tensor.Empty(this, new Shape(checked((int)(tokens * blocks * 2))));
        // With one block the kernel writes dq, dk, dz_0 directly; else per-block parts [element, block].
        using var dqParts = blocks > 1 ? Tensor.Empty(this, new Shape(checked((int)(tokens * s.KeyDim)), blocks)) : null;
        using var dkParts = blocks > 1 ? Tensor.Empty(this, new Shape(checked((int)(tokens * s.KeyDim)), blocks)) : null;
        var dz0 = p.Normalise ? g.DInitialNormaliser : null;
        using var dzParts = blocks > 1 && dz0 is not null ? Tensor.Empty(this, new Shape(s.Batch * s.Heads * s.KeyDim, blocks)) : null;
        var kernel = Kernels.Get("fast_weights/recurrent_sum_backward", [rowsPerGroup * lanes, lanes]);
        Span<byte> pushBytes = stackalloc byte[160];
        for (int phase = 0; phase < 2; phase++)
        {
            var push = new PushConstants(pushBytes);
            push.Address(p.Q);
            push.Address(p.K);
            push.Address(p.V);
            push.Address(g.DOutput);
            push.AddressOrZero(p.InitialState);
            push.AddressOrZero(p.Normalise ? p.InitialNormaliser : null);
            push.AddressOrZero(g.DFinalState);
            push.AddressOrZero(p.Normalise ? g.DFinalNormaliser : null);
            push.Address(scalars);
            push.Address(dqParts ?? g.DQ);
            push.Address(dkParts ?? g.DK);
            push.Address(g.DV);
            push.AddressOrZero(g.DInitialState);
            push.AddressOrZero(dzParts ?? dz0);
            push.Append(s.Steps);
            push.Append(s.Heads);
            push.Append(s.KeyDim);
            push.Append(s.ValueDim);
            push.Append(p.Scale);
            push.Append(p.Epsilon);
            push.Append(p.Normalise ? 1 : 0);
            push.Append(phase);
            if (push.Bytes.Length > Kernels.PushConstantBytes)
                throw new NotSupportedException($"{op}: needs {push.Bytes.Length} bytes of push constants; {Capabilities.Name} offers {Kernels.PushConstantBytes}");
            Dispatch(kernel, push, (uint)(s.Batch * s.Heads), (uint)blocks);
        }
        if (dqParts is not null) SumLastAxis(dqParts, g.DQ);
        if (dkParts is not null) SumLastAxis(dkParts, g.DK);
        if (dzParts is not null) SumLastAxis(dzParts, dz0!);
    }

    /// <summary>destination = source, or zeros when there is no source (nothing when there is no destination).</summary>
    private void CopyOrZero(Tensor? source, Tensor? destination)
    {
        if (destination is null) return;
        if (source is null) Fill(destination, 0f);
        else if (!ReferenceEquals(source.Storage, destination.Storage) || source.ByteOffset != destination.ByteOffset)
            Copy(source.Storage, source.ByteOffset, destination.Storage, destination.ByteOffset, source.ByteCount);
    }

    /// <summary>Lanes per state row: the smallest power of two that keeps each lane at or under
    /// 32 columns and within one subgroup.</summary>
    internal int RecurrentLanes(string op, int keyDim, int valueDim)
    {
        int lanes = 1;
        while ((keyDim + lanes - 1) / lanes > RecurrentColumnsPerLane) lanes *= 2;
        if (lanes > Capabilities.SubgroupSize || lanes > 32)
            throw new OpArgumentException(op, "k", $"key dimension {keyDim} needs {lanes} lanes per state row, more than the subgroup size {Capabilities.SubgroupSize} of {Capabilities.Name}");
        return lanes;
    }

    internal void RecurrentForward(string rule, Tensor q, Tensor k, Tensor v, Tensor? beta, Tensor? alpha, Tensor? initialState, Tensor? finalState,
        Tensor output, Tensor? initialZ, Tensor? finalZ, FastWeightShape s, float scale, float eps, bool normalise,
        Tensor? checkpoints = null, int checkpointInterval = 0)
    {
        if (s.Batch == 0 || s.Heads == 0) return;
        string op = rule == "delta" ? "DeltaRuleForward" : "LinearAttentionForward";
        int lanes = RecurrentLanes(op, s.KeyDim, s.ValueDim);
        int rowsPerGroup = Math.Max(1, Math.Min(s.ValueDim, Math.Min(Capabilities.MaxWorkgroupInvocations, 1024) / lanes));
        var kernel = Kernels.Get($"fast_weights/{rule}_f32", [rowsPerGroup * lanes, lanes]);
        var push = new PushConstants(stackalloc byte[128]);
        push.Address(q);
        push.Address(k);
        push.Address(v);
        push.AddressOrZero(beta);
        push.AddressOrZero(alpha);
        push.AddressOrZero(initialState);
        push.AddressOrZero(finalState);
        push.Address(output);
        push.AddressOrZero(initialZ);
        push.AddressOrZero(finalZ);
        push.AddressOrZero(checkpoints);
        push.Append(s.Steps);
        push.Append(s.Heads);
        push.Append(s.KeyDim);
        push.Append(s.ValueDim);
        push.Append(scale);
        push.Append(eps);
        push.Append(normalise ? 1 : 0);
        push.Append(checkpointInterval);
        Dispatch(kernel, push, (uint)(s.Batch * s.Heads), Groups(s.ValueDim, rowsPerGroup));
    }
}
