namespace FastWeights.Engine.Ops;

/// <summary>How a backend runs linear attention. Auto lets it choose (the CPU: recurrent for short
/// sequences, chunked otherwise); the results agree to rounding.</summary>
public enum LinearAttentionAlgorithm
{
    Auto,
    /// <summary>Token by token, O(T Dk Dv) sequential: the decoding path and the reference form.</summary>
    Recurrent,
    /// <summary>Chunks of C tokens: O = Q S_0^T + (Q K^T ⊙ M) V inside a chunk, S_C = S_0 + V^T K
    /// between chunks. Matrix products; the chunk size is the backend's (CPU: 64).</summary>
    Chunked,
}

/// <summary>Linear attention (the sum rule), per batch b and head h, on already feature-mapped q, k:
///   S_t = S_{t-1} + v_t k_t^T,   y_t = S_t (scale q_t)
///   o_t = y_t                                               (unnormalised)
///   o_t = y_t / (z_t . (scale q_t) + eps),  z_t = z_{t-1} + k_t   (normalised)
/// The scale multiplies q everywhere, so with the normaliser it cancels except against eps.
/// Layouts: q, k [B, T, H, Dk]; v, o [B, T, H, Dv]; S [B, H, Dv, Dk]; z [B, H, Dk]. Backends compute
/// from and into f32; q, k, v (one dtype), o, dO, dq, dk and dv may also be f16 or bf16, which
/// LinearAttention converts (exact f32 copies in, rounded to nearest out). States and normalisers are f32.</summary>
public sealed record LinearAttentionProblem(
    Tensor Q, Tensor K, Tensor V, float Scale, bool Normalise, float Epsilon,
    Tensor? InitialState, Tensor? InitialNormaliser, FastWeightShape Shape, LinearAttentionAlgorithm Algorithm);

/// <summary>Gradients of a linear-attention forward: given dO and optionally the gradients of the
/// final state and normaliser, every non-null output gradient is overwritten.</summary>
public sealed record LinearAttentionGradients(
    Tensor DOutput, Tensor? DFinalState, Tensor? DFinalNormaliser,
    Tensor DQ, Tensor DK, Tensor DV, Tensor? DInitialState, Tensor? DInitialNormaliser);

/// <summary>What a backend implements. Arguments arrive checked (shapes, dtypes, one backend).
/// A null initial state or normaliser means zeros. The final state (normaliser) may be the very
/// tensor given as the initial one: it is then updated in place. Likewise dInitialState may be
/// dFinalState.</summary>
public interface ILinearAttentionOps
{
    void LinearAttentionForward(LinearAttentionProblem problem, Tensor output, Tensor? finalState, Tensor? finalNormaliser);
    void LinearAttentionBackward(LinearAttentionProblem problem, LinearAttentionGradients gradients);
}

/// <summary>Checked entry points of linear attention.</summary>
public static class LinearAttention
{
    /// <summary>Added to the normaliser's denominator z_t . q_t; with positive feature maps the
    /// denominator grows with t, so 1e-6 only guards the first tokens.</summary>
    public const float DefaultEpsilon = 1e-6f;

    /// <summary>Runs linear attention over T tokens: output [B, T, H, Dv]; finalState
    /// [B, H, Dv, Dk] and finalNormaliser [B, H, Dk] are written when given. q and k are taken as
    /// already feature-mapped (<see cref="FeatureMaps"/>); <paramref name="scale"/> multiplies q
    /// (e.g. 1 / sqrt(Dk)), and the backward multiplies dq by it as well.</summary>
    public static void Forward(Tensor q, Tensor k, Tensor v, Tensor output,
        Tensor? initialState = null, Tensor? finalState = null,
        bool normalise = false, Tensor? initialNormaliser = null, Tensor? finalNormaliser = null,
        float scale = 1f, float epsilon = DefaultEpsilon, LinearAttentionAlgorithm algorithm = LinearAttentionAlgorithm.Auto) =>
        Run("LinearAttentionForward", q, k, v, output, initialState, finalState, normalise, initialNormaliser, finalNormaliser, scale, epsilon, algorithm);

    /// <summary>One token for generation, O(Dk Dv) whatever came before: q, k [B, H, Dk]; v and
    /// output [B, H, Dv]; state [B, H, Dv, Dk] (and, when normalising, normaliser [B, H, Dk]) are
    /// updated in place. Normalises iff a normaliser is given.</summary>
    public static void Step(Tensor q, Tensor k, Tensor v, Tensor state, Tensor output,
        Tensor? normaliser = null, float scale = 1f, float epsilon = DefaultEpsilon)
    {
        const string op = "LinearAttentionStep";
        Op.Family<ILinearAttentionOps>(op, ("q", q), ("k", k), ("v", v), ("state", state), ("output", output), ("normaliser", normaliser));
        Op.Rank(op, "q", q, 3, 3);
        Op.Rank(op, "k", k, 3, 3);
        Op.Rank(op, "v", v, 3, 3);
        Op.Rank(op, "output", output, 3, 3);
        Op.ShapeIs(op, "state", state, new Shape(q.Shape[0], q.Shape[1], v.Shape[2], q.Shape[2]), "([B, H, Dv, Dk] from q and v)");
        if (normaliser is not null) Op.ShapeIs(op, "normaliser", normaliser, q.Shape, "([B, H, Dk], as q)");
        static Tensor Token(Tensor t) => t.Reshape(new Shape(t.Shape[0], 1, t.Shape[1], t.Shape[2]));
        Run(op, Token(q), Token(k), Token(v), Token(output), state, state, normaliser is not null, normaliser, normaliser,
            scale, epsilon, LinearAttentionAlgorithm.Recurrent);
    }

    /// <summary>Gradients for q, k, v (and, when given, the initial state and normaliser) of
    /// <see cref="Forward"/> with the same arguments, given dOutput [B, T, H, Dv] and optionally the
    /// gradients reaching the final state and normaliser (null: zero).</summary>
    public static void Backward(Tensor q, Tensor k, Tensor v, Tensor dOutput, Tensor dq, Tensor dk, Tensor dv,
        Tensor? initialState = null, Tensor? dFinalState = null, Tensor? dInitialState = null,
        bool normalise = false, Tensor? initialNormaliser = null, Tensor? dFinalNormaliser = null, Tensor? dInitialNormaliser = null,
        float scale = 1f, float epsilon = DefaultEpsilon, LinearAttentionAlgorithm algorithm = LinearAttentionAlgorithm.Auto)
    {
        const string op = "LinearAttentionBackward";
        var ops = Op.Family<ILinearAttentionOps>(op, ("q", q), ("k", k), ("v", v), ("dOutput", dOutput), ("dq", dq), ("dk", dk), ("dv", dv),
            ("initialState", initialState), ("dFinalState", dFinalState), ("dInitialState", dInitialState),
            ("initialNormaliser", initialNormaliser), ("dFinalNormaliser", dFinalNormaliser), ("dInitialNormaliser", dInitialNormaliser));
        var problem = Check(op, q, k, v, dOutput, "dOutput", initialState, dFinalState, "dFinalState", normalise,
            initialNormaliser, dFinalNormaliser, "dFinalNormaliser", scale, epsilon, algorithm);
        var s = problem.Shape;
        Gradient(op, "dq", dq, s.Keys, "([B, T, H, Dk], as q)", half: true);
        Gradient(op, "dk", dk, s.Keys, "([B, T, H, Dk], as k)", half: true);
        Gradient(op, "dv", dv, s.Values, "([B, T, H, Dv], as v)", half: true);
        if (dInitialState is not null) Gradient(op, "dInitialState", dInitialState, s.State, "([B, H, Dv, Dk])");
        if (dInitialNormaliser is not null)
        {
            if (!normalise) throw new OpArgumentException(op, "dInitialNormaliser", $"{dInitialNormaliser.Shape} was given but normalise is false");
            Gradient(op, "dInitialNormaliser", dInitialNormaliser, s.Normaliser, "([B, H, Dk])");
        }
        var outputs = new (string, Tensor?)[] { ("dq", dq), ("dk", dk), ("dv", dv), ("dInitialState", dInitialState), ("dInitialNormaliser", dInitialNormaliser) };
        var inputs = new (string, Tensor?)[] { ("q", q), ("k", k), ("v", v), ("dOutput", dOutput), ("initialState", initialState), ("initialNormaliser", initialNormaliser) };
        for (int i = 0; i < outputs.Length; i++)
        {
            if (outputs[i].Item2 is not { } output) continue;
            foreach (var (name, input) in inputs) if (input is not null) Op.DistinctOutput(op, outputs[i].Item1, output, name, input);
            for (int j = 0; j < i; j++) if (outputs[j].Item2 is { } other) Op.DistinctOutput(op, outputs[i].Item1, output, outputs[j].Item1, other);
        }
        Op.Finite(op, "dOutput", dOutput);
        using var wide = new WideCopies();
        ops.LinearAttentionBackward(Widen(problem, wide),
            new LinearAttentionGradients(wide.In(dOutput), dFinalState, dFinalNormaliser, wide.Out(dq), wide.Out(dk), wide.Out(dv), dInitialState, dInitialNormaliser));
        wide.ConvertBack();
    }

    private static void Run(string op, Tensor q, Tensor k, Tensor v, Tensor output, Tensor? initialState, Tensor? finalState,
        bool normalise, Tensor? initialNormaliser, Tensor? finalNormaliser, float scale, float epsilon, LinearAttentionAlgorithm algorithm)
    {
        var ops = Op.Family<ILinearAttentionOps>(op, ("q", q), ("k", k), ("v", v), ("output", output), ("initialState", initialState), ("finalState", finalState),
            ("initialNormaliser", initialNormaliser), ("finalNormaliser", finalNormaliser));
        var problem = Check(op, q, k, v, output, "output", initialState, finalState, "finalState", normalise,
            initialNormaliser, finalNormaliser, "finalNormaliser", scale, epsilon, algorithm);
        var inputs = new (string, Tensor?)[] { ("q", q), ("k", k), ("v", v), ("initialState", initialState), ("initialNormaliser", initialNormaliser) };
        foreach (var (name, input) in inputs) if (input is not null) Op.DistinctOutput(op, "output", output, name, input);
        // the final state and normaliser may be their initial tensors (in place), nothing else
        var others = new (string, Tensor?)[] { ("q", q), ("k", k), ("v", v), ("output", output) };
        if (finalState is not null)
            foreach (var (name, input) in others.Append(("initialNormaliser", initialNormaliser)).Append(("finalNormaliser", finalNormaliser)))
                if (input is not null) Op.DistinctOutput(op, "finalState", finalState, name, input);
        if (finalNormaliser is not null)
            foreach (var (name, input) in others.Append(("initialState", initialState)))
                if (input is not null) Op.DistinctOutput(op, "finalNormaliser", finalNormaliser, name, input);
        using var wide = new WideCopies();
        ops.LinearAttentionForward(Widen(problem, wide), wide.Out(output), finalState, finalNormaliser);
        wide.ConvertBack();
    }

    // The problem with exact f32 copies of half q, k, v (the backends read f32).
    private static LinearAttentionProblem Widen(LinearAttentionProblem p, WideCopies wide) =>
        p.Q.DType == DType.F32 ? p : p with { Q = wide.In(p.Q), K = wide.In(p.K), V = wide.In(p.V) };

    /// <summary>Shapes and dtypes shared by forward and backward; <paramref name="perToken"/> is the
    /// output (forward) or dOutput (backward), <paramref name="stateOut"/> the final state or its
    /// gradient.</summary>
    private static LinearAttentionProblem Check(string op, Tensor q, Tensor k, Tensor v, Tensor perToken, string perTokenName,
        Tensor? initialState, Tensor? stateOut, string stateOutName, bool normalise,
        Tensor? initialNormaliser, Tensor? normaliserOut, string normaliserOutName, float scale, float epsilon, LinearAttentionAlgorithm algorithm)
    {
        var s = FastWeightShape.Check(op, q, k, v, null, initialState, null, halfInputs: true);
        Op.ShapeIs(op, perTokenName, perToken, s.Values, "([B, T, H, Dv])");
        Op.DTypeIs(op, perTokenName, perToken, DType.F32, DType.F16, DType.BF16);
        if (stateOut is not null)
        {
            Op.ShapeIs(op, stateOutName, stateOut, s.State, "([B, H, Dv, Dk])");
            Op.DTypeIs(op, stateOutName, stateOut, DType.F32);
        }
        foreach (var (name, t) in new[] { ("initialNormaliser", initialNormaliser), (normaliserOutName, normaliserOut) })
        {
            if (t is null) continue;
            if (!normalise) throw new OpArgumentException(op, name, $"{t.Shape} was given but normalise is false");
            Op.ShapeIs(op, name, t, s.Normaliser, "([B, H, Dk])");
            Op.DTypeIs(op, name, t, DType.F32);
        }
        if (!float.IsFinite(scale)) throw new OpArgumentException(op, "scale", $"is {scale}; it must be finite");
        if (!(epsilon >= 0) || !float.IsFinite(epsilon)) throw new OpArgumentException(op, "epsilon", $"is {epsilon}; it must be finite and >= 0");
        if (!Enum.IsDefined(algorithm)) throw new OpArgumentException(op, "algorithm", $"is {(int)algorithm}, not a LinearAttentionAlgorithm");
        Op.Finite(op, "q", q);
        Op.Finite(op, "k", k);
        Op.Finite(op, "v", v);
        return new LinearAttentionProblem(q, k, v, scale, normalise, epsilon, initialState, initialNormaliser, s, algorithm);
    }

    private static void Gradient(string op, string name, Tensor t, Shape expected, string why, bool half = false)
    {
        Op.ShapeIs(op, name, t, expected, why);
        if (half) Op.DTypeIs(op, name, t, DType.F32, DType.F16, DType.BF16);
        else Op.DTypeIs(op, name, t, DType.F32);
    }
}
