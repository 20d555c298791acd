using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// shaders/rnn/: the head-wise recurrent cells. Heads of up to FusedRnnMaxHeadDim (128) units run
// fused (rnn_forward.comp, rnn_backward.comp: one workgroup per (head, batch tile) keeps the head's
// R in registers and loops over all T steps in one dispatch); larger heads run one dispatch per step
// (rnn_forward_step.comp, rnn_backward_step.comp: gate rows split over workgroups by unit, all steps
// recorded into one command buffer). The backward is in VulkanBackend.RnnBackward.cs.
public sealed partial class VulkanBackend : IRnnOps
{
    private const int FusedTargetWorkgroups = 128;   // enough to spread over an H100/H200's 132 SMs
    private const int StepBatchTile = 16;      // TILE in rnn_forward_step.comp and rnn_backward_step.comp

    /// <summary>Largest head (units) the fused one-dispatch kernels take: 32, 64 or 128 (the default).
    /// Larger heads run one dispatch per step. Lower it to run small heads through the per-step kernels
    /// (tests, benchmarks); 0 sends every head there. FASTWEIGHTS_RNN_FUSED_MAX sets the default.</summary>
    public int FusedRnnMaxHeadDim { get; set; } = int.TryParse(Environment.GetEnvironmentVariable("FASTWEIGHTS_RNN_FUSED_MAX"), out int max) ? max : 128;

    /// <summary>Batch rows per workgroup of the fused kernels: 1, 2, 4 or 8; 0 (the default) takes the
    /// largest tile that still gives heads x tiles >= 128 workgroups (else 1). A workgroup's cost per
    /// step grows with its tile while R costs registers in every workgroup alike, so small batches and
    /// few heads run faster on more, smaller tiles.</summary>
    public int FusedRnnBatchTile { get; set; }

    private int FusedTile(RnnProblem p)
    {
        if (FusedRnnBatchTile is 1 or 2 or 4 or 8) return FusedRnnBatchTile;
        int tile = 8;
        while (tile > 1 && (long)p.Heads * ((p.Batch + tile - 1) / tile) < FusedTargetWorkgroups) tile /= 2;
        return tile;
    }

    public void RnnForward(RnnProblem p, Tensor outputs, IReadOnlyList<Tensor?> finalStates, Tensor? saved)
    {
        if (p.Batch == 0 || p.Heads == 0 || p.HeadDim == 0) return;
        if (p.Steps == 0) { CopyStates(p.InitialStates, finalStates); return; }
        int dhMax = FusedHeadDim(p);
        if (dhMax == 0) { RnnForwardSteps(p, outputs, finalStates, saved); return; }
        int invocations = (p.Gates * p.HeadDim + 31) / 32 * 32;
        if (invocations > Capabilities.MaxWorkgroupInvocations) invocations = p.Gates * p.HeadDim;
        int tile = FusedTile(p);
        var kernel = Kernels.Get($"rnn/{CellName(p.Cell)}_{dhMax}", [invocations, tile]);
        var push = new PushConstants(stackalloc byte[128]);
        push.Address(p.Preactivations);
        push.Address(p.RecurrentWeights);
        push.AddressOrZero(p.RecurrentBias);
        push.Address(outputs);
        push.AddressOrZero(saved);
        PushStates(ref push, p.InitialStates, 4);
        PushStates(ref push, finalStates, 4);
        PushSizes(ref push, p);
        Dispatch(kernel, push, (uint)p.Heads, Groups(p.Batch, tile));
    }

    /// <summary>One dispatch per step; h_{t-1} is read back from the outputs, c (n, m) go through a
    /// state scratch [4][B, H*Dh] (h, c, n, m) that is copied to the final states at the end.</summary>
    private void RnnForwardSteps(RnnProblem p, Tensor outputs, IReadOnlyList<Tensor?> finalStates, Tensor? saved)
    {
        var kernel = Kernels.Get($"rnn/{CellName(p.Cell)}_step", [StepInvocations], fullSubgroups: true);
        using var state = Tensor.Empty(this, new Shape(4, p.Batch, p.Hidden));
        // Every workgroup reads all of h_{t-1} while others write h_t: an h_0 that is the output
        // itself (Rnn.Step) is read from a copy.
        var h0 = p.InitialStates.Count > 0 ? p.InitialStates[0] : null;
        using var h0Copy = h0 is not null && ReferenceEquals(h0.Storage, outputs.Storage) ? h0.To(this) : null;
        Span<byte> bytes = stackalloc byte[128];
        for (int t = 0; t < p.Steps; t++)
        {
            var push = new PushConstants(bytes);
            push.Address(p.Preactivations);
            push.Address(p.RecurrentWeights);
            push.AddressOrZero(p.RecurrentBias);
            push.Address(outputs);
            push.AddressOrZero(saved);
            push.AddressOrZero(h0Copy ?? h0);
            for (int i = 1; i < 4; i++) push.AddressOrZero(i < p.InitialStates.Count ? p.InitialStates[i] : null);
            push.Address(state);
            PushSizes(ref push, p);
            push.Append(t);
            push.Append(StepSubgroups);
            Dispatch(kernel, push, Groups(p.Hidden, StepSubgroups), Groups(p.Batch, StepBatchTile));
        }
        long plane = (long)p.Batch * p.Hidden * sizeof(float);
        for (int i = 0; i < finalStates.Count; i++)
            if (finalStates[i] is { } f) Copy(state.Storage, state.ByteOffset + i * plane, f.Storage, f.ByteOffset, plane);
    }

    /// <summary>The DH_MAX variant of the fused kernels for this problem, or 0 for the per-step ones.</summary>
    private int FusedHeadDim(RnnProblem p)
    {
        int dhMax = p.HeadDim <= 32 ? 32 : p.HeadDim <= 64 ? 64 : p.HeadDim <= 128 ? 128 : 0;
        if (dhMax > FusedRnnMaxHeadDim || 4 * dhMax > Capabilities.MaxWorkgroupInvocations) return 0;
        return dhMax;
    }

    /// <summary>Subgroups per workgroup of the per-step kernels, each taking one unit at a time: 1 to 16,
    /// default 4 (FASTWEIGHTS_RNN_STEP_SUBGROUPS sets the default). More share a step's reads of
    /// h_{t-1} (dq_{t+1} in the backward) through one L1; fewer spread the units over more SMs.</summary>
    public int RnnStepSubgroups { get; set; } =
        int.TryParse(Environment.GetEnvironmentVariable("FASTWEIGHTS_RNN_STEP_SUBGROUPS"), out int subgroups) && subgroups is >= 1 and <= 16 ? subgroups : 4;

    private int LargestSubgroup => Math.Max(Capabilities.MaxSubgroupSize, Capabilities.SubgroupSize);

    private int StepSubgroups => Math.Clamp(RnnStepSubgroups, 1, Math.Max(1, Capabilities.MaxWorkgroupInvocations / LargestSubgroup));

    // Whole subgroups: a multiple of the largest subgroup size the device may pick.
    private int StepInvocations => StepSubgroups * LargestSubgroup;

    // The sizes every rnn kernel declares after its tensors: batch, T, heads, Dh.
    private static void PushSizes(ref PushConstants push, RnnProblem p)
    {
        push.Append(p.Batch);
        push.Append(p.Steps);
        push.Append(p.Heads);
        push.Append(p.HeadDim);
    }

    private static string CellName(RnnCell cell) => cell switch { RnnCell.Lstm => "lstm", RnnCell.Gru => "gru", RnnCell.SLstm => "slstm", _ => "elman" };

    // T = 0: the final states are the initial ones (zeros where absent).
    private void CopyStates(IReadOnlyList<Tensor?> from, IReadOnlyList<Tensor?> to)
    {
        for (int i = 0; i < to.Count; i++)
        {
            if (to[i] is not { } destination) continue;
            if (i < from.Count && from[i] is { } source) Copy(source.Storage, source.ByteOffset, destination.Storage, destination.ByteOffset, source.ByteCount);
            else Fill(destination, 0f);
        }
    }
}
