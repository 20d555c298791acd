namespace FastWeights.Engine.Ops;

/// <summary>Linear attention (the sum rule), per batch b and head h, on feature-mapped q and k:
///   S_t = S_{t-1} + v_t k_t^T,   y_t = S_t (scale q_t)
///   o_t = y_t                                        (unnormalised)
///   o_t = y_t / (z_t . (scale q_t) + eps),  z_t = z_{t-1} + k_t   (normalised)
/// Layouts: q, k [B, T, H, Dk]; v, o [B, T, H, Dv]; S [B, H, Dv, Dk]; z [B, H, Dk].</summary>
public sealed record LinearAttentionProblem(
    Tensor Q, Tensor K, Tensor V, float Scale, bool Normalise, float Epsilon,
    Tensor? InitialState, Tensor? InitialNormaliser, FastWeightShape Shape);

public sealed record LinearAttentionGradients(
    Tensor DOutput, Tensor? DFinalState, Tensor? DFinalNormaliser,
    Tensor DQ, Tensor DK, Tensor DV, Tensor? DInitialState, Tensor? DInitialNormaliser);

public interface ILinearAttentionOps
{
    void LinearAttentionForward(LinearAttentionProblem problem, Tensor output, Tensor? finalState, Tensor? finalNormaliser);
    void LinearAttentionBackward(LinearAttentionProblem problem, LinearAttentionGradients gradients);
}

public static class LinearAttention
{
    public const float DefaultEpsilon = 1e-6f;

    /// <summary>Runs linear attention over T steps. Null initial state / normaliser mean zeros; the
    /// final ones may be the initial tensors themselves (updated in place).</summary>
    public static void Forward(Tensor q, Tensor k, Tensor v, Tensor output,
        Tensor? initialState = null, Tensor? finalState = null, bool normalise = false,
        Tensor? initialNormaliser = null, Tensor? finalNormaliser = null, float scale = 1f, float epsilon = DefaultEpsilon)
    {
        const string op = "LinearAttentionForward";
        var ops = Op.Family<ILinearAttentionOps>(op, ("q", q), ("k", k), ("v", v), ("output", output), ("initialState", initialState), ("finalState", finalState),
            ("initialNormaliser", initialNormaliser), ("finalNormaliser", finalNormaliser));
        var problem = Check(op, q, k, v, output, initialState, finalState, normalise, initialNormaliser, finalNormaliser, scale, epsilon);
        foreach (var (name, t) in new[] { ("q", q), ("k", k), ("v", v) }) Op.DistinctOutput(op, "output", output, name, t);
        ops.LinearAttentionForward(problem, output, finalState, finalNormaliser);
    }

    /// <summary>One token for generation: q, k [B, H, Dk], v and output [B, H, Dv]; the state (and
    /// the normaliser [B, H, Dk] when normalising) are updated in place.</summary>
    public static void Step(Tensor q, Tensor k, Tensor v, Tensor state, Tensor output, Tensor? normaliser = null, float scale = 1f, float epsilon = DefaultEpsilon)
    {
        const string op = "LinearAttentionStep";
        Op.Family<ILinearAttentionOps>(op, ("q", q), ("k", k), ("v", v), ("state", state), ("output", output), ("normaliser", normaliser));
        Op.Rank(op, "q", q, 3, 3);
        Op.Rank(op, "k", k, 3, 3);
        Op.Rank(op, "v", v, 3, 3);
        Op.Rank(op, "output", output, 3, 3);
        static Tensor Token(Tensor t) => t.Reshape(new Shape(t.Shape[0], 1, t.Shape[1], t.Shape[2]));
        Forward(Token(q), Token(k), Token(v), Token(output), state, state, normaliser is not null, normaliser, normaliser, scale, epsilon);
    }

    /// <summary>Gradients for q, k, v and the initial state (and normaliser), given dO and optionally
    /// the gradients of the final state and normaliser.</summary>
    public static void Backward(Tensor q, Tensor k, Tensor v, Tensor dOutput, Tensor dq, Tensor dk, Tensor dv,
        Tensor? initialState = null, Tensor? dFinalState = null, Tensor? dInitialState = null, bool normalise = false,
        Tensor? initialNormaliser = null, Tensor? dFinalNormaliser = null, Tensor? dInitialNormaliser = null,
        float scale = 1f, float epsilon = DefaultEpsilon)
    {
        const string op = "LinearAttentionBackward";
        var ops = Op.Family<ILinearAttentionOps>(op, ("q", q), ("k", k), ("v", v), ("dOutput", dOutput), ("dq", dq), ("dk", dk), ("dv", dv),
            ("initialState", initialState), ("dFinalState", dFinalState), ("dInitialState", dInitialState),
            ("initialNormaliser", initialNormaliser), ("dFinalNormaliser", dFinalNormaliser), ("dInitialNormaliser", dInitialNormaliser));
        var problem = Check(op, q, k, v, dOutput, initialState, dFinalState, normalise, initialNormaliser, dFinalNormaliser, scale, epsilon);
        var s = problem.Shape;
        Op.ShapeIs(op, "dq", dq, s.Keys);
        Op.ShapeIs(op, "dk", dk, s.Keys);
        Op.ShapeIs(op, "dv", dv, s.Values);
        if (dInitialState is not null) Op.ShapeIs(op, "dInitialState", dInitialState, s.State);
        if (dInitialNormaliser is not null) Op.ShapeIs(op, "dInitialNormaliser", dInitialNormaliser, s.Normaliser);
        ops.LinearAttentionBackward(problem, new LinearAttentionGradients(dOutput, dFinalState, dFinalNormaliser, dq, dk, dv, dInitialState, dInitialNormaliser));
    }

    private static LinearAttentionProblem Check(string op, Tensor q, Tensor k, Tensor v, Tensor output, Tensor? initialState, Tensor? finalState,
        bool normalise, Tensor? initialNormaliser, Tensor? finalNormaliser, float scale, float epsilon)
    {
        var s = FastWeightShape.Check(op, q, k, v, output, initialState, finalState);
        foreach (var (name, t) in new[] { ("initialNormaliser", initialNormaliser), ("finalNormaliser", finalNormaliser) })
        {
            if (t is null) continue;
            if (!normalise) throw new OpArgumentException(op, name, $"{t.Shape} was given but normalise is false");
            Op.ShapeIs(op, name, t, s.Normaliser, "([B, H, Dk])");
            Op.DTypeIs(op, name, t, DType.F32);
        }
        if (!float.IsFinite(scale)) throw new OpArgumentException(op, "scale", $"is {scale}; it must be finite");
        if (!(epsilon >= 0)) throw new OpArgumentException(op, "epsilon", $"is {epsilon}; it must be >= 0");
        Op.Finite(op, "q", q);
        Op.Finite(op, "k", k);
        Op.Finite(op, "v", v);
        return new LinearAttentionProblem(q, k, v, scale, normalise, epsilon, initialState, initialNormaliser, s);
    }
}
