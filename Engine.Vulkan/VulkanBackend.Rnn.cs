using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// shaders/rnn/: the head-wise recurrent cells. Heads of up to FusedRnnMaxHeadDim (128) units run
// fused (rnn_forward.comp, rnn_backward.comp: one workgroup per (head, batch tile) keeps the head's
// R in registers and loops over all T steps in one dispatch); larger heads run one dispatch per step
// (rnn_forward_step.comp, rnn_backward_step.comp: a workgroup owns RnnStepUnits units of a head and a
// tile of StepBatchTile batch rows, R packed once per call by pack_step_weights.comp, all steps
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

    /// <summary>f16/bf16 pre-activations and R are widened to f32 copies on entry (one pass over
    /// each); the kernels compute and store in f32.</summary>
    public bool RnnTakesHalfInputs => true;

    // f32 copies of half pre-activations (when the kernels read them: not the backward's) and R
    // (null where they are f32 already), substituted into p.
    private (Tensor? X, Tensor? R) WidenRnnInputs(ref RnnProblem p, bool preactivations = true)
    {
        var x = !preactivations || p.Preactivations.DType == DType.F32 ? null : FastWeights.Engine.Ops.Pointwise.Convert(p.Preactivations, DType.F32);
        var r = p.RecurrentWeights.DType == DType.F32 ? null : FastWeights.Engine.Ops.Pointwise.Convert(p.RecurrentWeights, DType.F32);
        p = p with { Preactivations = x ?? p.Preactivations, RecurrentWeights = r ?? p.RecurrentWeights };
        return (x, r);
    }

    public void RnnForward(RnnProblem p, Tensor outputs, IReadOnlyList<Tensor?> finalStates, Tensor? saved)
    {
        var (wideX, wideR) = WidenRnnInputs(ref p);
        using (wideX) using (wideR) RnnForwardF32(p, outputs, finalStates, saved);
    }

    private void RnnForwardF32(RnnProblem p, Tensor outputs, IReadOnlyList<Tensor?> finalStates, Tensor? saved)
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

    /// <summary>One dispatch per step, or one for all steps where the workgroups all fit on the
    /// device at once (<see cref="RnnPersistent"/>); h_{t-1} is read back from the outputs, c (n, m)
    /// go through a state scratch [4][B, H*Dh] (h, c, n, m) that is copied to the final states at the end.</summary>
    private void RnnForwardSteps(RnnProblem p, Tensor outputs, IReadOnlyList<Tensor?> finalStates, Tensor? saved)
    {
        var (units, persistent) = StepPlan(p);
        int outs = p.Gates * units;
        var (chunk, prefetch) = StepStaging(p.HeadDim, outs, backward: false);
        bool vec4 = p.HeadDim % 4 == 0 && outputs.ByteOffset % 16 == 0;
        int weightRegs = StepWeightRegisters(p.HeadDim, outs, persistent);
        var kernel = Kernels.Get($"rnn/{CellName(p.Cell)}_step", [256 / outs * outs, units, chunk, prefetch, vec4 ? 1 : 0, persistent ? 1 : 0, weightRegs]);
        using var packed = PackStepWeights(p, backward: false, units);
        using var state = Tensor.Empty(this, new Shape(4, p.Batch, p.Hidden));
        // Every workgroup reads all of h_{t-1} while others write h_t: an h_0 that is the output
        // itself (Rnn.Step) is read from a copy.
        var h0 = p.InitialStates.Count > 0 ? p.InitialStates[0] : null;
        using var h0Copy = h0 is not null && ReferenceEquals(h0.Storage, outputs.Storage) ? h0.To(this) : null;
        uint blocks = (uint)(p.Heads * StepBlocks(p, units)), tiles = Groups(p.Batch, StepBatchTile);
        using var ring = persistent ? ExchangeRing(2L * p.Batch * p.Hidden) : null;     // [2][B, H*Dh]
        var fault = persistent ? FaultWord(p.Cell + "Forward") : null;
        Span<byte> bytes = stackalloc byte[128];
        for (int t = 0; t < (persistent ? 1 : p.Steps); t++)
        {
            var push = new PushConstants(bytes);
            push.Address(p.Preactivations);
            push.Address(packed);
            push.AddressOrZero(p.RecurrentBias);
            push.Address(outputs);
            push.AddressOrZero(saved);
            push.AddressOrZero(h0Copy ?? h0);
            for (int i = 1; i < 4; i++) push.AddressOrZero(i < p.InitialStates.Count ? p.InitialStates[i] : null);
            push.Address(state);
            push.AddressOrZero(ring);
            push.AddressOrZero(fault);
            PushSizes(ref push, p);
            push.Append(t);
            Dispatch(kernel, push, blocks, tiles);
        }
        long plane = (long)p.Batch * p.Hidden * sizeof(float);
        for (int i = 0; i < finalStates.Count; i++)
            if (finalStates[i] is { } f) Copy(state.Storage, state.ByteOffset + i * plane, f.Storage, f.ByteOffset, plane);
    }

    /// <summary>Whether the per-step kernels (heads above the fused size) run all steps in one
    /// dispatch: the workgroups of each head and batch tile then wait for each other's values of the
    /// previous step (step_exchange.glsl) instead of for a dispatch boundary, which needs every
    /// workgroup resident at once. Null (the default): where the device says how many workgroups surely run at once
    /// (<see cref="DeviceCapabilities.ComputeUnits"/>) and the problem needs no more, taking up to
    /// 16 units per workgroup to get there; true: always (with the units of
    /// <see cref="RnnStepUnits"/> where they do not fit; a wait that times out is reported by the
    /// next download); false: never. FASTWEIGHTS_RNN_PERSISTENT=0|1 sets it.</summary>
    public bool? RnnPersistent { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_RNN_PERSISTENT") switch
    {
        "1" => true,
        "0" => false,
        _ => null,
    };

    /// <summary>Whether the persistent per-step kernels keep each invocation's share of the packed R in
    /// registers for all steps (WEIGHT_REGS of step_matvec.glsl) where it takes at most
    /// <see cref="MaxStepWeightRegisters"/> vec4s, instead of reading it from L2 every step. True by
    /// default; FASTWEIGHTS_RNN_WEIGHT_REGS=0 sets it false.</summary>
    public bool RnnWeightsInRegisters { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_RNN_WEIGHT_REGS") != "0";

    /// <summary>Most weight vec4s an invocation keeps in registers: 64 floats. With 24-32 (one head
    /// of 768 or 1024 units) the kernels reached 215-254 of the 255 registers an NVIDIA invocation may
    /// have and ran 1-5% slower than reading R from L2; with 6-8 (heads of 192 and 256) 3-5% faster
    /// (bench/results/2026-12-02-h200-run49.txt).</summary>
    private const int MaxStepWeightRegisters = 16;

    /// <summary>WEIGHT_REGS for a persistent per-step kernel with <paramref name="inCount"/> inputs and
    /// <paramref name="outs"/> outputs per workgroup (256 / outs slices of the input's vec4s), or 0.</summary>
    private int StepWeightRegisters(int inCount, int outs, bool persistent)
    {
        if (!persistent || !RnnWeightsInRegisters) return 0;
        int lanes = (outs + 1) / 2, slices = 256 / outs * outs / lanes;     // LANES, SLICES2 of step_matvec.glsl
        int regs = 2 * (((inCount + 3) / 4 + slices - 1) / slices);         // two outputs' vec4s per column
        return regs <= MaxStepWeightRegisters ? regs : 0;
    }

    /// <summary>Units per workgroup of the per-step kernels for this problem and whether they run
    /// persistent (<see cref="RnnPersistent"/>).</summary>
    private (int Units, bool Persistent) StepPlan(RnnProblem p) => StepPlan(p.Batch, p.Heads, p.HeadDim);

    private (int Units, bool Persistent) StepPlan(int batch, int heads, int headDim)
    {
        int units = StepUnits;
        if (RnnPersistent == false) return (units, false);
        long tiles = Groups(batch, StepBatchTile);
        if (Capabilities.ComputeUnits > 0)
            for (int u = units; u <= 16; u *= 2)
                if (heads * StepBlocks(headDim, u) * tiles <= Capabilities.ComputeUnits) return (u, true);
        return (units, RnnPersistent == true);
    }

    /// <summary>Which recurrent kernels a problem of this size runs (for benchmarks and tests):
    /// "fused DH_MAX", or the forward's and then, where it differs, the backward's per-step kernels as
    /// "per-step xUNITS" or "persistent xUNITS" (BackwardStepPlan), the latter followed by " R in
    /// registers" where the kernel keeps its weights there (<see cref="RnnWeightsInRegisters"/>), the
    /// backward by " row partials" where it splits its product over the gate rows
    /// (<see cref="RnnBackwardRowPartials"/>).</summary>
    public string RnnKernelFor(RnnCell cell, int batch, int heads, int headDim)
    {
        int dhMax = FusedHeadDim(headDim);
        if (dhMax > 0) return $"fused {dhMax}";
        int gates = cell.Gates();
        var forward = StepPlan(batch, heads, headDim);
        var backward = BackwardStepPlan(batch, gates, heads, headDim);
        string Name((int Units, bool Persistent) plan, int inCount, int outs) =>
            $"{(plan.Persistent ? "persistent" : "per-step")} x{plan.Units}{(StepWeightRegisters(inCount, outs, plan.Persistent) > 0 ? " R in registers" : "")}";
        string forwardName = Name(forward, headDim, gates * forward.Units);
        string backwardName = Name((backward.Units, backward.Persistent), gates * headDim, backward.Units) + (backward.RowPartials ? " row partials" : "");
        return backwardName == forwardName ? forwardName : $"{forwardName}, backward {backwardName}";
    }

    /// <summary>The DH_MAX variant of the fused kernels for this problem, or 0 for the per-step ones.</summary>
    private int FusedHeadDim(RnnProblem p) => FusedHeadDim(p.HeadDim);

    private int FusedHeadDim(int headDim)
    {
        int dhMax = headDim <= 32 ? 32 : headDim <= 64 ? 64 : headDim <= 128 ? 128 : 0;
        if (dhMax > FusedRnnMaxHeadDim || 4 * dhMax > Capabilities.MaxWorkgroupInvocations) return 0;
        return dhMax;
    }

    // A multiple of every subgroup size the device may pick (the fused backward asks for whole subgroups).
    private int LargestSubgroup => Math.Max(Capabilities.MaxSubgroupSize, Capabilities.SubgroupSize);

    /// <summary>Units per workgroup of the per-step kernels (large heads): 1, 2, 4 (the default), 8 or
    /// 16 (FASTWEIGHTS_RNN_STEP_UNITS sets the default). A workgroup has 256 invocations whatever
    /// the size and reads its tile's whole input vector (h_{t-1}, or dq_{t+1} of G*Dh values in the
    /// backward) once per step: more units cut those reads, fewer give more workgroups.</summary>
    public int RnnStepUnits { get; set; } =
        int.TryParse(Environment.GetEnvironmentVariable("FASTWEIGHTS_RNN_STEP_UNITS"), out int units) ? units : 4;

    private int StepUnits => RnnStepUnits is 1 or 2 or 4 or 8 or 16 ? RnnStepUnits : 4;

    /// <summary>Most vec4 columns the per-step kernels stage at a time (at least 64; 64 gives the
    /// kernels of bench/results run 11); FASTWEIGHTS_RNN_STEP_CHUNK sets the default, otherwise no cap.</summary>
    public int RnnStepChunkCap { get; set; } =
        int.TryParse(Environment.GetEnvironmentVariable("FASTWEIGHTS_RNN_STEP_CHUNK"), out int cap) && cap >= 64 ? cap : int.MaxValue;

    private static long StepBlocks(RnnProblem p, int units) => StepBlocks(p.HeadDim, units);

    private static long StepBlocks(int headDim, int units) => (headDim + units - 1) / units;

    /// <summary>Vec4 columns of the input vector staged per chunk by the per-step kernels (CHUNK4 of
    /// step_matvec.glsl) and the weight vec4s each invocation loads ahead of a chunk (PREFETCH), for
    /// an input of <paramref name="inCount"/> values and <paramref name="outs"/> outputs per workgroup.
    /// Every chunk costs an L2 round trip and two barriers, so fewer chunks should be faster, but on
    /// the H200 (bench/results/2026-12-01-h200-run13.txt) the forward at Dh 768 ran slower in one
    /// chunk of 192 columns (48 KiB of shared memory, 12 weight vec4s ahead) than in three of 64
    /// (17.6 vs 13.4 ms), while the backward (G*Dh inputs) gained from chunks of 171-192. So the
    /// forward stages at most 128 columns with at most 8 weight vec4s ahead, the backward as many
    /// as shared memory holds (16 batch rows x 16 bytes per column: 192 in 48 KiB), chunks split
    /// evenly. <see cref="RnnStepChunkCap"/> caps both.</summary>
    private (int Chunk, int Prefetch) StepStaging(int inCount, int outs, bool backward)
    {
        int in4 = (inCount + 3) / 4;
        int largest = (int)Math.Min(backward ? 256 : 128, Capabilities.MaxSharedMemoryBytes / (16 * StepBatchTile));
        largest = Math.Max(Math.Min(largest, RnnStepChunkCap), 64);
        int chunks = (in4 + largest - 1) / largest;
        int chunk = Math.Max(64, (in4 + chunks - 1) / chunks);
        int slices = 256 / outs;
        return (chunk, Math.Clamp((chunk + slices - 1) / slices, 1, backward ? 12 : 8));
    }

    /// <summary>R packed for the per-step kernels (pack_step_weights.comp): per head and block of
    /// `units` units, vec4s over the reduction index (k for the forward's R h, the G*Dh gate rows
    /// for the backward's R^T dq) times the block's outputs (its G*units gate rows, or its
    /// `units` columns), zero-padded.</summary>
    private Tensor PackStepWeights(RnnProblem p, bool backward, int units)
    {
        int inCount = backward ? p.Gates * p.HeadDim : p.HeadDim, outs = backward ? units : p.Gates * units;
        long vectors = p.Heads * StepBlocks(p, units) * ((inCount + 3) / 4) * outs;
        var packed = Tensor.Empty(this, new Shape(checked((int)(vectors * 4))));
        var kernel = Kernels.Get("rnn/pack_step_weights");
        var push = new PushConstants(stackalloc byte[64]);
        push.Address(p.RecurrentWeights);
        push.Address(packed);
        push.Append(p.Heads);
        push.Append(p.HeadDim);
        push.Append(p.Gates);
        push.Append(units);
        push.Append(backward ? 1 : 0);
        Dispatch(kernel, push, (uint)Math.Min(Groups(vectors, 256), 65535));
        return packed;
    }

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
