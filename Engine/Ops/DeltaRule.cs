namespace FastWeights.Engine.Ops;

/// <summary>How a backend runs the delta rule. Auto lets it choose (chunked for long sequences,
/// recurrent for short ones and for decoding); the results agree to rounding.</summary>
public enum DeltaRuleAlgorithm
{
    Auto,
    /// <summary>Token by token, O(T Dk Dv) sequential: the decoding path and the reference form.</summary>
    Recurrent,
    /// <summary>Chunks of C tokens in the WY form (Yang et al. 2024): per chunk
    /// T = (I + strictly_lower(diag(beta) K K^T))^-1 diag(beta), W = T K, U = T V,
    /// U' = U - W S_0^T, O = Q S_0^T + (Q K^T ⊙ M) U', S_C = S_0 + U'^T K. Matrix products; the
    /// chunk size is the backend's (docs/ops.md).</summary>
    Chunked,
}

/// <summary>The delta rule (DeltaNet) and its gated form, per batch b and head h:
///   S_t = alpha_t S_{t-1} + beta_t (v_t - alpha_t S_{t-1} k_t) k_t^T   (alpha_t = 1 when ungated)
///   o_t = S_t (scale q_t)
/// i.e. S_t = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T.
/// Layouts: q, k [B, T, H, Dk]; v, o [B, T, H, Dv]; beta, alpha [B, T, H]; S [B, H, Dv, Dk].
/// beta in (0, 2) and alpha in (0, 1] (checked with EngineOptions.CheckValues). k is used as
/// given: DeltaNet L2-normalises it first (a separate op).</summary>
public sealed record DeltaRuleProblem(
    Tensor Q, Tensor K, Tensor V, Tensor Beta, Tensor? Alpha, float Scale,
    Tensor? InitialState, FastWeightShape Shape, DeltaRuleAlgorithm Algorithm = DeltaRuleAlgorithm.Auto);

/// <summary>Gradients of a delta-rule forward, given dO and (optionally) the gradient of the final
/// state. Every output gradient is overwritten.</summary>
public sealed record DeltaRuleGradients(
    Tensor DOutput, Tensor? DFinalState,
    Tensor DQ, Tensor DK, Tensor DV, Tensor DBeta, Tensor? DAlpha, Tensor? DInitialState);

/// <summary>What a delta-rule forward kept for the backward of the same problem (DeltaRule.ForwardSaving):
/// intermediates the backward then reads instead of recomputing them (on Vulkan's chunked form: the
/// WY factors, the inverted chunk matrices, U' and the chunk-start states, about five times the
/// size of v). It belongs to one problem: the backward takes it only with the same k, v, beta, alpha
/// and initial-state tensors, which must not have changed in between. Dispose it after the backward.</summary>
public abstract class DeltaRuleSaved : IDisposable
{
    public abstract void Dispose();
}

public interface IDeltaRuleOps
{
    /// <summary>Writes o [B, T, H, Dv] and, when given, the final state (which may be the same tensor
    /// as the initial state: updated in place).</summary>
    void DeltaRuleForward(DeltaRuleProblem problem, Tensor output, Tensor? finalState);
    void DeltaRuleBackward(DeltaRuleProblem problem, DeltaRuleGradients gradients);

    /// <summary>The forward, also returning what its backward can reuse; null where the backend
    /// keeps nothing (its backward recomputes).</summary>
    DeltaRuleSaved? DeltaRuleForwardSaving(DeltaRuleProblem problem, Tensor output, Tensor? finalState)
    {
        DeltaRuleForward(problem, output, finalState);
        return null;
    }

    /// <summary>The backward reading what <see cref="DeltaRuleForwardSaving"/> kept (null: as the
    /// plain backward).</summary>
    void DeltaRuleBackward(DeltaRuleProblem problem, DeltaRuleGradients gradients, DeltaRuleSaved? saved) => DeltaRuleBackward(problem, gradients);

    /// <summary>Whether the backend reads f16 or bf16 q, k, v and beta itself (computed in f32; states,
    /// dbeta, dalpha and the initial state's gradient stay f32). Where it says no, DeltaRule hands it f32
    /// copies of half inputs (exact), and its saving forward keeps nothing for such a call.</summary>
    bool DeltaRuleTakesHalfInputs => false;

    /// <summary>Whether the backend itself stores this problem's outputs o (forward) and its gradients
    /// dq, dk, dv, and reads its dO (backward), as <paramref name="dtype"/> (f16 or bf16; the same dtype
    /// for all four in a backward), rounded to nearest from f32. Where it says no, DeltaRule computes
    /// them in f32 tensors of its own and converts (Pointwise.Convert): same values, more traffic.</summary>
    bool DeltaRuleStoresHalf(DeltaRuleProblem problem, DType dtype) => false;
}

public static class DeltaRule
{
    /// <summary>Runs the delta rule over T steps. <paramref name="initialState"/> null means zeros;
    /// <paramref name="finalState"/> may be the initial state itself (updated in place).
    /// <paramref name="output"/> may be f32, f16 or bf16 (computed in f32, rounded to nearest; see
    /// <see cref="IDeltaRuleOps.DeltaRuleStoresHalf"/>).</summary>
    public static void Forward(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor output,
        Tensor? initialState = null, Tensor? finalState = null, Tensor? alpha = null, float scale = 1f,
        DeltaRuleAlgorithm algorithm = DeltaRuleAlgorithm.Auto)
    {
        var (ops, given) = CheckForward(q, k, v, beta, output, initialState, finalState, alpha, scale, algorithm);
        using var wide = new WideCopies();
        var problem = WidenInputs(ops, given, wide);
        ops.DeltaRuleForward(problem, ops.DeltaRuleStoresHalf(problem, output.DType) ? output : wide.Out(output), finalState);
        wide.ConvertBack();
    }

    // The problem with f32 copies of half q, k, v and beta where the backend reads f32 only
    // (IDeltaRuleOps.DeltaRuleTakesHalfInputs); the copies are exact.
    private static DeltaRuleProblem WidenInputs(IDeltaRuleOps ops, DeltaRuleProblem p, WideCopies wide) =>
        ops.DeltaRuleTakesHalfInputs ? p : p with { Q = wide.In(p.Q), K = wide.In(p.K), V = wide.In(p.V), Beta = wide.In(p.Beta) };

    private static bool NeedsWideInputs(IDeltaRuleOps ops, DeltaRuleProblem p) =>
        !ops.DeltaRuleTakesHalfInputs && (p.Q.DType != DType.F32 || p.Beta.DType != DType.F32);

    private static (IDeltaRuleOps Ops, DeltaRuleProblem Problem) CheckForward(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor output,
        Tensor? initialState, Tensor? finalState, Tensor? alpha, float scale, DeltaRuleAlgorithm algorithm)
    {
        const string op = "DeltaRuleForward";
        var ops = Op.Family<IDeltaRuleOps>(op, ("q", q), ("k", k), ("v", v), ("beta", beta), ("output", output), ("initialState", initialState), ("finalState", finalState), ("alpha", alpha));
        var problem = Check(op, q, k, v, beta, alpha, scale, output, initialState, finalState, algorithm);
        foreach (var (name, t) in new[] { ("q", q), ("k", k), ("v", v), ("beta", beta) }) Op.DistinctOutput(op, "output", output, name, t);
        return (ops, problem);
    }

    /// <summary><see cref="Forward"/> for training: also returns what the backend's backward would
    /// otherwise recompute (null when it keeps nothing, e.g. the CPU backend or a recurrent run).
    /// Pass it to <see cref="Backward"/> with the same k, v, beta, alpha and initial state, unchanged, then
    /// dispose it. With it the backward is also correct when the forward updated the initial state in
    /// place.</summary>
    public static DeltaRuleSaved? ForwardSaving(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor output,
        Tensor? initialState = null, Tensor? finalState = null, Tensor? alpha = null, float scale = 1f,
        DeltaRuleAlgorithm algorithm = DeltaRuleAlgorithm.Auto)
    {
        var (ops, problem) = CheckForward(q, k, v, beta, output, initialState, finalState, alpha, scale, algorithm);
        if (NeedsWideInputs(ops, problem))
        {
            // what a backend would keep of f32 copies made for this call could not serve the backward
            Forward(q, k, v, beta, output, initialState, finalState, alpha, scale, algorithm);
            return null;
        }
        using var wide = new WideCopies();
        var saved = ops.DeltaRuleForwardSaving(problem, ops.DeltaRuleStoresHalf(problem, output.DType) ? output : wide.Out(output), finalState);
        try { wide.ConvertBack(); }
        catch { saved?.Dispose(); throw; }
        return saved;
    }

    /// <summary>One token for generation, O(1) in the sequence length: q, k [B, H, Dk], v and the
    /// output [B, H, Dv], beta (and alpha) [B, H]; the state [B, H, Dv, Dk] is updated in place.</summary>
    public static void Step(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor state, Tensor output, Tensor? alpha = null, float scale = 1f)
    {
        const string op = "DeltaRuleStep";
        Op.Family<IDeltaRuleOps>(op, ("q", q), ("k", k), ("v", v), ("beta", beta), ("state", state), ("output", output), ("alpha", alpha));
        Op.Rank(op, "q", q, 3, 3);
        Op.Rank(op, "v", v, 3, 3);
        Op.Rank(op, "output", output, 3, 3);
        Op.Rank(op, "beta", beta, 2, 2);
        if (alpha is not null) Op.Rank(op, "alpha", alpha, 2, 2);
        static Tensor Token(Tensor t) => t.Reshape(new Shape(t.Shape[0], 1, t.Shape[1], t.Shape[2]));
        static Tensor TokenScalar(Tensor t) => t.Reshape(new Shape(t.Shape[0], 1, t.Shape[1]));
        Forward(Token(q), Token(k), Token(v), TokenScalar(beta), Token(output), state, state, alpha is null ? null : TokenScalar(alpha), scale, DeltaRuleAlgorithm.Recurrent);
    }

    /// <summary>Gradients of <see cref="Forward"/> for q, k, v, beta, alpha (when gated) and the
    /// initial state, given dO [B, T, H, Dv] and optionally the final state's gradient. dO, dq, dk and
    /// dv may each be f32, f16 or bf16 (computed in f32, rounded to nearest); dbeta, dalpha and the
    /// states' gradients are f32.</summary>
    public static void Backward(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor dOutput,
        Tensor dq, Tensor dk, Tensor dv, Tensor dbeta,
        Tensor? initialState = null, Tensor? dFinalState = null, Tensor? dInitialState = null,
        Tensor? alpha = null, Tensor? dalpha = null, float scale = 1f, DeltaRuleAlgorithm algorithm = DeltaRuleAlgorithm.Auto,
        DeltaRuleSaved? saved = null)
    {
        const string op = "DeltaRuleBackward";
        var ops = Op.Family<IDeltaRuleOps>(op, ("q", q), ("k", k), ("v", v), ("beta", beta), ("dOutput", dOutput), ("dq", dq), ("dk", dk), ("dv", dv), ("dbeta", dbeta),
            ("initialState", initialState), ("dFinalState", dFinalState), ("dInitialState", dInitialState), ("alpha", alpha), ("dalpha", dalpha));
        var given = Check(op, q, k, v, beta, alpha, scale, dOutput, initialState, dFinalState, algorithm);
        var s = given.Shape;
        Op.ShapeIs(op, "dq", dq, s.Keys);
        Op.ShapeIs(op, "dk", dk, s.Keys);
        Op.ShapeIs(op, "dv", dv, s.Values);
        s.CheckPerToken(op, "dbeta", dbeta);
        foreach (var (name, t) in new[] { ("dq", dq), ("dk", dk), ("dv", dv) }) Op.DTypeIs(op, name, t, DType.F32, DType.F16, DType.BF16);
        if (dInitialState is not null) { Op.ShapeIs(op, "dInitialState", dInitialState, s.State); Op.DTypeIs(op, "dInitialState", dInitialState, DType.F32); }
        if ((alpha is null) != (dalpha is null))
            throw new OpArgumentException(op, "dalpha", alpha is null ? "was given but the rule is ungated (alpha is null)" : $"is missing: the gated rule needs a [B, T, H] gradient for alpha {alpha.Shape}");
        if (dalpha is not null) s.CheckPerToken(op, "dalpha", dalpha);
        using var wide = new WideCopies();
        var problem = WidenInputs(ops, given, wide);
        // dO, dq, dk, dv as they are where the backend takes them so (all f32, or all of one half dtype it
        // stores itself); else f32 stand-ins
        Tensor[] perToken = [dOutput, dq, dk, dv];
        bool asGiven = perToken.All(t => t.DType == dOutput.DType) && (dOutput.DType == DType.F32 || ops.DeltaRuleStoresHalf(problem, dOutput.DType));
        var gradients = asGiven ? new DeltaRuleGradients(dOutput, dFinalState, dq, dk, dv, dbeta, dalpha, dInitialState)
            : new DeltaRuleGradients(wide.In(dOutput), dFinalState, wide.Out(dq), wide.Out(dk), wide.Out(dv), dbeta, dalpha, dInitialState);
        if (saved is null) ops.DeltaRuleBackward(problem, gradients);
        else ops.DeltaRuleBackward(problem, gradients, saved);
        wide.ConvertBack();
    }

    private static DeltaRuleProblem Check(string op, Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? alpha, float scale, Tensor output, Tensor? initialState, Tensor? finalState,
        DeltaRuleAlgorithm algorithm)
    {
        if (!Enum.IsDefined(algorithm)) throw new OpArgumentException(op, "algorithm", $"is {(int)algorithm}, not a DeltaRuleAlgorithm");
        var s = FastWeightShape.Check(op, q, k, v, output, initialState, finalState, halfInputs: true, halfOutput: true);
        s.CheckPerToken(op, "beta", beta, halfInputs: true);
        Op.InRange(op, "beta", beta, 0f, 2f, highInclusive: false);
        if (alpha is not null)
        {
            s.CheckPerToken(op, "alpha", alpha);
            Op.InRange(op, "alpha", alpha, 0f, 1f, highInclusive: true);
        }
        if (!float.IsFinite(scale)) throw new OpArgumentException(op, "scale", $"is {scale}; it must be finite");
        Op.Finite(op, "q", q);
        Op.Finite(op, "k", k);
        Op.Finite(op, "v", v);
        return new DeltaRuleProblem(q, k, v, beta, alpha, scale, initialState, s, algorithm);
    }
}
