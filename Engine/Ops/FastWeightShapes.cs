namespace FastWeights.Engine.Ops;

/// <summary>Sizes of a fast-weight problem, read from q [B, T, H, Dk] and v [B, T, H, Dv].</summary>
public readonly record struct FastWeightShape(int Batch, int Steps, int Heads, int KeyDim, int ValueDim)
{
    public Shape State => new(Batch, Heads, ValueDim, KeyDim);
    public Shape Normaliser => new(Batch, Heads, KeyDim);
    public Shape PerToken => new(Batch, Steps, Heads);
    public Shape Keys => new(Batch, Steps, Heads, KeyDim);
    public Shape Values => new(Batch, Steps, Heads, ValueDim);

    /// <summary>Checks q, k, v (and, when given, the output and the states) and returns the sizes.
    /// q, k, v are f32, or with <paramref name="halfInputs"/> one dtype of f32, f16, bf16 for all three;
    /// outputs and states are f32.</summary>
    public static FastWeightShape Check(string op, Tensor q, Tensor k, Tensor v, Tensor? output, Tensor? initialState, Tensor? finalState, bool halfInputs = false,
        bool halfOutput = false)
    {
        Op.Rank(op, "q", q, 4, 4);
        Op.Rank(op, "k", k, 4, 4);
        Op.Rank(op, "v", v, 4, 4);
        var s = new FastWeightShape(q.Shape[0], q.Shape[1], q.Shape[2], q.Shape[3], v.Shape[3]);
        if (k.Shape != q.Shape)
        {
            string what = k.Shape[3] != q.Shape[3] ? "its key dimension differs from q's" : "its batch, length or heads differ from q's";
            throw new OpArgumentException(op, "k", $"has shape {k.Shape} but q has shape {q.Shape}: {what}");
        }
        if (v.Shape[0] != s.Batch || v.Shape[1] != s.Steps || v.Shape[2] != s.Heads)
            throw new OpArgumentException(op, "v", $"has shape {v.Shape} but q has shape {q.Shape}: batch, length and heads must match");
        if (!halfInputs) foreach (var (name, t) in new[] { ("q", q), ("k", k), ("v", v) }) Op.DTypeIs(op, name, t, DType.F32);
        else
        {
            Op.DTypeIs(op, "q", q, DType.F32, DType.F16, DType.BF16);
            foreach (var (name, t) in new[] { ("k", k), ("v", v) })
                if (t.DType != q.DType) throw new OpArgumentException(op, name, $"{t.Shape} is {t.DType.Name()} but q {q.Shape} is {q.DType.Name()}: q, k and v must share one dtype");
        }
        if (output is not null)
        {
            Op.ShapeIs(op, "output", output, s.Values, "([B, T, H, Dv])");
            if (halfOutput) Op.DTypeIs(op, "output", output, DType.F32, DType.F16, DType.BF16);
            else Op.DTypeIs(op, "output", output, DType.F32);
        }
        if (initialState is not null) { Op.ShapeIs(op, "initialState", initialState, s.State, "([B, H, Dv, Dk])"); Op.DTypeIs(op, "initialState", initialState, DType.F32); }
        if (finalState is not null) { Op.ShapeIs(op, "finalState", finalState, s.State, "([B, H, Dv, Dk])"); Op.DTypeIs(op, "finalState", finalState, DType.F32); }
        return s;
    }

    public void CheckPerToken(string op, string name, Tensor t, bool halfInputs = false)
    {
        Op.ShapeIs(op, name, t, PerToken, "([B, T, H])");
        if (halfInputs) Op.DTypeIs(op, name, t, DType.F32, DType.F16, DType.BF16);
        else Op.DTypeIs(op, name, t, DType.F32);
    }
}
