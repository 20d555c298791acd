using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// Unnormalised linear attention in chunks, on the delta rule's chunk kernels (shaders/delta_rule/):
// the sum rule S_t = S_{t-1} + v_t k_t^T is the chunked delta rule with W = 0 and U = V, so U' = V,
//   O = Q' S_0^T + (Q' K^T ⊙ M) V,   S_C = S_0 + V^T K
// and the backward is the delta rule's without the WY step: dV = dU' = P^T dO + K dS_C^T,
// dS_0 = dS_C + dO^T Q', dQ = scale (dO S_0 + dP K), dK = dP^T Q' + V dS_C with dP = (dO V^T) ⊙ M.
// The normalised form runs recurrent (its denominator z_t . q'_t is not part of these kernels). Inputs
// are f32 (LinearAttention checks), so the tensor-core stages and their compact bf16 intermediates
// never run here and every intermediate is f32.
public sealed partial class VulkanBackend
{
    /// <summary>Whether linear attention runs chunked here: unnormalised, head dims within the chunk
    /// kernels', and Chunked asked for or Auto with enough tokens.</summary>
    internal bool UsesChunkedLinearAttention(LinearAttentionProblem p)
    {
        var s = p.Shape;
        if (p.Normalise || s.Steps == 0 || s.Batch == 0 || s.Heads == 0) return false;
        if (s.KeyDim > DeltaRuleChunkedMaxHeadDim || s.ValueDim > DeltaRuleChunkedMaxHeadDim) return false;
        return p.Algorithm switch
        {
            LinearAttentionAlgorithm.Chunked => true,
            LinearAttentionAlgorithm.Recurrent => false,
            _ => s.Steps >= DeltaRuleChunkedFromSteps,
        };
    }

    private void ChunkedLinearAttentionForward(LinearAttentionProblem p, Tensor output, Tensor? finalState)
    {
        var s = p.Shape;
        using var w = Tensor.Zeros(this, s.Keys);
        using var uPrime = Tensor.Empty(this, s.Values);     // = V, written by the state pass
        using var states = Tensor.Empty(this, ChunkStates(s));
        ChunkState(p.K, s, p.InitialState, w, p.V, uPrime, states, finalState);
        ChunkOutput("chunk_output", p.Q, p.K, s, p.Scale, p.V, states, output, compact: false);
    }

    private void ChunkedLinearAttentionBackward(LinearAttentionProblem p, LinearAttentionGradients g)
    {
        var s = p.Shape;
        using var w = Tensor.Zeros(this, s.Keys);
        using var uPrime = Tensor.Empty(this, s.Values);
        using var states = Tensor.Empty(this, ChunkStates(s));
        using var dStates = Tensor.Empty(this, ChunkStates(s));
        using var dW = Tensor.Empty(this, s.Keys);           // -dU' S_0: unused without the WY step
        ChunkState(p.K, s, p.InitialState, w, p.V, uPrime, states, null);
        // dU' (= dV) accumulates in g.DV: P^T dO, then + K dS_C^T in the reverse pass.
        ChunkOutput("chunk_values_grad", p.Q, p.K, s, p.Scale, g.DOutput, null, g.DV, compact: false);
        ChunkStateBackward(p.Q, p.K, w, s, p.Scale, g.DOutput, g.DV, g.DV, dStates, g.DFinalState, g.DInitialState);
        ChunkGradQK(p.Q, p.K, s, p.Scale, g.DOutput, p.V, g.DV, states, dStates, g.DQ, g.DK, dW);
    }
}
