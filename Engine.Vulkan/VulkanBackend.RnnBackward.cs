using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// Backward of the head-wise recurrent cells: BPTT in reverse time (rnn_backward.comp fused for
// heads of up to FusedRnnMaxHeadDim units, rnn_backward_step.comp one dispatch per step beyond),
// which writes dx, dh_0 (dc_0, dn_0) and two stores, dq [H, B*T, G*Dh] (the gradient of each gate's
// recurrent part) and h_{t-1} [H, B*T, Dh]. After the loop: dR_h = dq_h^T h_{t-1,h} for all heads
// as one batched GEMM, and the bias gradient as the column sums of dq (bias_gradient.comp).
public sealed partial class VulkanBackend
{
    public void RnnBackward(RnnProblem p, Tensor outputs, Tensor saved, RnnGradients g)
    {
        var (_, wideR) = WidenRnnInputs(ref p, preactivations: false);   // the backward reads R, not x
        using (wideR) RnnBackwardF32(p, outputs, saved, g);
    }

    private void RnnBackwardF32(RnnProblem p, Tensor outputs, Tensor saved, RnnGradients g)
    {
        if (p.Batch == 0 || p.Heads == 0 || p.HeadDim == 0 || p.Steps == 0) { EmptyRnnBackward(p, g); return; }
        int tokens = checked(p.Batch * p.Steps), rows = p.Gates * p.HeadDim;
        using var dq = Tensor.Empty(this, new Shape(p.Heads, tokens, rows));
        using var hPrev = Tensor.Empty(this, new Shape(p.Heads, tokens, p.HeadDim));
        int dhMax = FusedHeadDim(p);
        if (dhMax > 0) RnnBackwardFused(p, outputs, saved, g, dq, hPrev, dhMax);
        else RnnBackwardSteps(p, outputs, saved, g, dq, hPrev);

        // dR_h = sum over (b, t) of dq_t h_{t-1}^T: [G*Dh, B*T] x [B*T, Dh] per head (the GEMM splits
        // the long token axis when the output has few tiles)
        FastWeights.Engine.Ops.Gemm.Forward(dq, hPrev, g.DRecurrentWeights, transposeA: true);
        if (g.DRecurrentBias is { } dBias)
        {
            var kernel = Kernels.Get("rnn/bias_gradient");
            var push = new PushConstants(stackalloc byte[64]);
            push.Address(dq);
            push.Address(dBias);
            push.Append(tokens);
            push.Append(p.Heads);
            push.Append(p.HeadDim);
            push.Append(p.Gates);
            Dispatch(kernel, push, Groups((long)p.Heads * rows, 32));
        }
        // m is a stabiliser: no gradient reaches m_0.
        if (g.DInitialStates.Count > 3 && g.DInitialStates[3] is { } dm0) Fill(dm0, 0f);
    }

    private void RnnBackwardFused(RnnProblem p, Tensor outputs, Tensor saved, RnnGradients g, Tensor dq, Tensor hPrev, int dhMax)
    {
        string op = p.Cell + "Backward";
        int slots = p.Cell == RnnCell.Elman ? 1 : 4;                 // SLOTS in rnn_backward.comp
        int subgroup = LargestSubgroup;
        if (subgroup % slots != 0 || Capabilities.SubgroupSize % slots != 0)
            throw new NotSupportedException($"{op}: the fused Vulkan backward needs subgroups of a multiple of {slots} invocations; {Capabilities.Name} has {Capabilities.SubgroupSize}");
        int invocations = (slots * p.HeadDim + subgroup - 1) / subgroup * subgroup;
        int tile = FusedTile(p);
        var kernel = Kernels.Get($"rnn/{CellName(p.Cell)}_bwd_{dhMax}", [invocations, tile], fullSubgroups: true);
        var push = new PushConstants(stackalloc byte[192]);
        PushBackwardTensors(ref push, p.RecurrentWeights, p, outputs, saved, g, dq, hPrev);
        PushSizes(ref push, p);
        CheckPushSize(op, push);
        Dispatch(kernel, push, (uint)p.Heads, Groups(p.Batch, tile));
    }

    /// <summary>One dispatch per step t = T-1 .. 0 and a last one (t = -1) for dh_0, or one for all
    /// of them where the workgroups all fit on the device at once (<see cref="RnnPersistent"/>); R is
    /// packed once per call (columns of each block of units, vec4s along the gate rows) so that each
    /// step reads it coalesced.</summary>
    private void RnnBackwardSteps(RnnProblem p, Tensor outputs, Tensor saved, RnnGradients g, Tensor dq, Tensor hPrev)
    {
        string op = p.Cell + "Backward";
        var (units, persistent, rowPartials) = BackwardStepPlan(p);
        // Row partials read R as it is ([H, G*Dh, Dh]); the staged product reads it packed per block.
        using var packed = rowPartials ? null : PackStepWeights(p, backward: true, units);
        using var state = Tensor.Empty(this, new Shape(3, p.Batch, p.Hidden));
        var (chunk, prefetch) = rowPartials ? (64, 1) : StepStaging(p.Gates * p.HeadDim, units, backward: true);
        bool vec4 = p.Gates * p.HeadDim % 4 == 0 && dq.ByteOffset % 16 == 0;
        bool vec4R = rowPartials && p.HeadDim % 4 == 0 && p.RecurrentWeights.ByteOffset % 16 == 0;
        int weightRegs = StepWeightRegisters(p.Gates * p.HeadDim, units, persistent);
        var kernel = Kernels.Get($"rnn/{CellName(p.Cell)}_bwd_step",
            [256, units, chunk, prefetch, vec4 ? 1 : 0, persistent ? 1 : 0, weightRegs, rowPartials ? 1 : 0, vec4R ? 1 : 0]);
        uint blocks = (uint)(p.Heads * StepBlocks(p, units)), tiles = Groups(p.Batch, StepBatchTile);
        // persistent: the exchange ring [2][H][B, G*Dh]; row partials: the partial sums [2][H][blocks][B][Dh]
        using var ring = persistent ? ExchangeRing(2L * p.Heads * p.Batch * p.Gates * p.HeadDim)
            : rowPartials ? Tensor.Empty(this, new Shape(checked(2 * p.Heads * (int)StepBlocks(p, units) * p.Batch * p.HeadDim))) : null;
        var fault = persistent ? FaultWord(op) : null;
        Span<byte> bytes = stackalloc byte[192];
        for (int t = persistent ? -1 : p.Steps - 1; t >= -1; t--)
        {
            var push = new PushConstants(bytes);
            PushBackwardTensors(ref push, packed ?? p.RecurrentWeights, p, outputs, saved, g, dq, hPrev);
            push.Address(state);
            push.AddressOrZero(ring);
            push.AddressOrZero(fault);
            PushSizes(ref push, p);
            push.Append(t);
            CheckPushSize(op, push);
            Dispatch(kernel, push, blocks, tiles);
        }
    }

    /// <summary>Whether the one-dispatch-per-step backward splits its product over the gate rows each
    /// workgroup owns (ROW_PARTIALS of rnn_backward_step.comp: partial sums of R^T dq for every unit,
    /// added by each unit's workgroup in the next step) instead of staging all G*Dh values of dq in
    /// every workgroup, with <see cref="RnnRowPartialUnits"/> units per workgroup. Null (the default):
    /// where dq takes more than three staging chunks; true: wherever the backward runs one dispatch per
    /// step; false: never. FASTWEIGHTS_RNN_ROW_PARTIALS=0|1 sets it. On the H200 (one head, fwd+bwd
    /// +proj, bench/results/2026-12-02-h200-run51.txt) it took LSTM 1024 from 48.06 to 31.98 ms, LSTM 768
    /// from 36.18 to 25.77 and GRU 1024 from 38.87 to 29.41 with 8 units; with 4 units LSTM 1024 and
    /// GRU 1024 were slower than staging dq (51.57, 46.14 ms).</summary>
    public bool? RnnBackwardRowPartials { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_RNN_ROW_PARTIALS") switch
    {
        "1" => true,
        "0" => false,
        _ => null,
    };

    /// <summary>Units per workgroup of the backward's row-partials kernel (<see cref="RnnBackwardRowPartials"/>):
    /// 1, 2, 4, 8 (the default) or 16; FASTWEIGHTS_RNN_ROW_UNITS sets the default. Each step writes and
    /// reads ceil(Dh / units) x B x Dh partial sums, so more units cut that traffic while each
    /// workgroup multiplies G x units gate rows.</summary>
    public int RnnRowPartialUnits { get; set; } =
        int.TryParse(Environment.GetEnvironmentVariable("FASTWEIGHTS_RNN_ROW_UNITS"), out int rowUnits) ? rowUnits : 8;

    private int RowPartialUnits => RnnRowPartialUnits is 1 or 2 or 4 or 8 or 16 ? RnnRowPartialUnits : 8;

    private bool BackwardRowPartials(int gates, int headDim)
    {
        if (RnnBackwardRowPartials is { } forced) return forced;
        int inputs = gates * headDim, in4 = (inputs + 3) / 4, chunk = StepStaging(inputs, StepUnits, backward: true).Chunk;
        return (in4 + chunk - 1) / chunk > 3;
    }

    /// <summary>The backward's units and persistence: as the forward's (StepPlan), except that by
    /// default (RnnPersistent null) a backward whose dq_{t+1} takes more than three staging chunks runs
    /// one dispatch per step. On the H200 (bench/results runs 45, 46: fwd+bwd minus fwd, one head) the
    /// persistent backward was faster with three chunks (GRU 768: 19.2 against 19.7 ms) and slower
    /// with four or six (LSTM 768: 25.8 against 25.0; GRU 1024: 26.0 against 25.3; LSTM 1024: 36.5
    /// against 33.3): each chunk is a round of polls and two barriers inside every step, over fewer
    /// workgroups than the per-step kernels run.
    /// A backward that runs one dispatch per step then takes the row partials where
    /// <see cref="RnnBackwardRowPartials"/> says so (RowPartials, with their own units).</summary>
    private (int Units, bool Persistent, bool RowPartials) BackwardStepPlan(RnnProblem p) => BackwardStepPlan(p.Batch, p.Gates, p.Heads, p.HeadDim);

    private (int Units, bool Persistent, bool RowPartials) BackwardStepPlan(int batch, int gates, int heads, int headDim)
    {
        var plan = StepPlan(batch, heads, headDim);
        if (plan.Persistent && RnnPersistent != true)
        {
            int inputs = gates * headDim, in4 = (inputs + 3) / 4;
            int chunk = StepStaging(inputs, plan.Units, backward: true).Chunk;
            if ((in4 + chunk - 1) / chunk > 3) plan = (StepUnits, false);
        }
        if (!plan.Persistent && BackwardRowPartials(gates, headDim)) return (RowPartialUnits, false, true);
        return (plan.Units, plan.Persistent, false);
    }

    // The tensors both backward kernels declare first, in their order: the weights (R, or R^T per
    // head), saved, y, dy, dFinal h and c (the op allows only h for sLSTM; the kernels read c for
    // LSTM only), h0, c0, n0, m0, dx, the dq and h_{t-1} stores, dh0, dc0, dn0.
    private static void PushBackwardTensors(ref PushConstants push, Tensor weights, RnnProblem p, Tensor outputs, Tensor saved,
        RnnGradients g, Tensor dq, Tensor hPrev)
    {
        push.Address(weights);
        push.Address(saved);
        push.Address(outputs);
        push.Address(g.DOutputs);
        PushStates(ref push, g.DFinalStates, 2);
        PushStates(ref push, p.InitialStates, 4);
        push.Address(g.DPreactivations);
        push.Address(dq);
        push.Address(hPrev);
        PushStates(ref push, g.DInitialStates, 3);
    }

    private static void PushStates(ref PushConstants push, IReadOnlyList<Tensor?> states, int count)
    {
        for (int i = 0; i < count; i++) push.AddressOrZero(i < states.Count ? states[i] : null);
    }

    private void CheckPushSize(string op, in PushConstants push)
    {
        if (push.Bytes.Length > Kernels.PushConstantBytes)
            throw new NotSupportedException($"{op}: needs {push.Bytes.Length} bytes of push constants; {Capabilities.Name} offers {Kernels.PushConstantBytes}");
    }

    // No step or no row: dx is empty, dR and the bias gradient are 0, the initial-state gradients are
    // the final-state ones (h; LSTM c) or 0.
    private void EmptyRnnBackward(RnnProblem p, RnnGradients g)
    {
        if (g.DPreactivations.ElementCount > 0) Fill(g.DPreactivations, 0f);
        Fill(g.DRecurrentWeights, 0f);
        if (g.DRecurrentBias is not null) Fill(g.DRecurrentBias, 0f);
        for (int i = 0; i < g.DInitialStates.Count; i++)
        {
            if (g.DInitialStates[i] is not { } d || d.ElementCount == 0) continue;
            bool carried = i == 0 || (i == 1 && p.Cell == RnnCell.Lstm);
            if (carried && i < g.DFinalStates.Count && g.DFinalStates[i] is { } f) Copy(f.Storage, f.ByteOffset, d.Storage, d.ByteOffset, f.ByteCount);
            else Fill(d, 0f);
        }
    }
}
