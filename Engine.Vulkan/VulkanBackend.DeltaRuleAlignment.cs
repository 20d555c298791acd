using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

public sealed partial class VulkanBackend
{
    /// <summary>The chunked delta rule's tensor-core and fragment kernels read and write whole 16-byte
    /// vectors (8 bf16 or 4 f32) counted from each tensor's start, so every tensor they touch must start
    /// at a multiple of 16 bytes. Tensors from <see cref="Tensor.Empty"/> do (the memory pool aligns to
    /// 256 bytes), and so do row slices at the shapes those kernels take; a view that does not (a slice
    /// of a flat tensor at an odd element, reshaped) is copied into a fresh tensor for the call, and an
    /// output copied back into it afterwards, instead of being read or written misaligned. Disposing the
    /// call frees the copies.</summary>
    private sealed class AlignedDeltaRuleCall : IDisposable
    {
        private readonly List<Tensor> _owned = [];
        private readonly List<(Tensor Copy, Tensor Original)> _outputs = [];

        private static bool Aligned(Tensor t) => t.ByteOffset % 16 == 0;

        // A tensor the call reads: itself, or an aligned copy of it.
        private Tensor In(Tensor t)
        {
            if (Aligned(t)) return t;
            var copy = t.To(t.Backend);
            _owned.Add(copy);
            return copy;
        }

        private Tensor? InOrNull(Tensor? t) => t is null ? null : In(t);

        /// <summary>A tensor the call writes (whole, before reading any of it): itself, or a fresh
        /// tensor that <see cref="CopyOutputsBack"/> copies into it.</summary>
        public Tensor Out(Tensor t)
        {
            if (Aligned(t)) return t;
            var copy = Tensor.Empty(t.Backend, t.Shape, t.DType);
            _owned.Add(copy);
            _outputs.Add((copy, t));
            return copy;
        }

        public Tensor? OutOrNull(Tensor? t) => t is null ? null : Out(t);

        // (alpha and dalpha, f32, are read and written 4 bytes at a time, which any view allows.)
        public DeltaRuleProblem Problem(DeltaRuleProblem p) =>
            p with { Q = In(p.Q), K = In(p.K), V = In(p.V), Beta = In(p.Beta), InitialState = InOrNull(p.InitialState) };

        public DeltaRuleGradients Gradients(DeltaRuleGradients g) =>
            g with { DOutput = In(g.DOutput), DFinalState = InOrNull(g.DFinalState), DQ = Out(g.DQ), DK = Out(g.DK), DV = Out(g.DV),
                DBeta = Out(g.DBeta), DInitialState = OutOrNull(g.DInitialState) };

        /// <summary>Records the copies of the outputs back into the caller's tensors (after the last dispatch).</summary>
        public void CopyOutputsBack()
        {
            foreach (var (copy, original) in _outputs)
                original.Backend.Copy(copy.Storage, copy.ByteOffset, original.Storage, original.ByteOffset, original.ByteCount);
        }

        public void Dispose()
        {
            foreach (var t in _owned) t.Dispose();
        }
    }
}
