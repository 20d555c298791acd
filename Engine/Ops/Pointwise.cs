namespace FastWeights.Engine.Ops;

/// <summary>Elementwise activations. Each has a forward y = f(x) and a backward dx = f'(x) * dy.</summary>
public enum Activation
{
    Identity,
    /// <summary>sigmoid(x) = 1 / (1 + e^-x); f' = y (1 - y).</summary>
    Sigmoid,
    /// <summary>tanh(x); f' = 1 - y^2.</summary>
    Tanh,
    /// <summary>SiLU(x) = x sigmoid(x); f' = s (1 + x (1 - s)), s = sigmoid(x).</summary>
    Silu,
    /// <summary>elu(x) + 1 = x + 1 for x &gt; 0, e^x otherwise (a positive feature map); f' = 1 or e^x.</summary>
    EluPlusOne,
    /// <summary>max(x, 0); f' = [x &gt; 0].</summary>
    Relu,
}

/// <summary>Elementwise arithmetic, activations, reductions over the last axis and dtype conversion.
/// All f32 except <see cref="Convert"/>, which reads and writes any dtype.</summary>
public interface IPointwiseOps
{
    /// <summary>y = a + b (same shapes).</summary>
    void Add(Tensor a, Tensor b, Tensor y);
    /// <summary>y = a * b (same shapes).</summary>
    void Multiply(Tensor a, Tensor b, Tensor y);
    /// <summary>y = alpha * x + beta * y (beta = 0 overwrites y without reading it).</summary>
    void Scale(Tensor x, float alpha, float beta, Tensor y);
    void Activate(Activation activation, Tensor x, Tensor y);
    /// <summary>dx = f'(x) * dy.</summary>
    void ActivateBackward(Activation activation, Tensor x, Tensor dy, Tensor dx);
    /// <summary>y[r] = sum_j x[r, j] over the last axis; y has x's shape without its last axis.</summary>
    void SumLastAxis(Tensor x, Tensor y);
    /// <summary>dx[r, j] = dy[r]: the backward of <see cref="SumLastAxis"/>.</summary>
    void BroadcastLastAxis(Tensor dy, Tensor dx);
    /// <summary>Converts between f32, f16 and bf16 (round to nearest even).</summary>
    void Convert(Tensor source, Tensor destination);
    void Fill(Tensor y, float value);
}

/// <summary>Checked entry points of the pointwise family.</summary>
public static class Pointwise
{
    public static void Add(Tensor a, Tensor b, Tensor y) => Binary("Add", a, b, y).Add(a, b, y);

    /// <summary>Backward of y = a + b: da = dy, db = dy (a copy each, so it is nothing to compute).</summary>
    public static void Multiply(Tensor a, Tensor b, Tensor y) => Binary("Multiply", a, b, y).Multiply(a, b, y);

    /// <summary>Backward of y = a * b: da = dy * b, db = dy * a.</summary>
    public static void MultiplyBackward(Tensor a, Tensor b, Tensor dy, Tensor? da, Tensor? db)
    {
        if (da is not null) Multiply(dy, b, da);
        if (db is not null) Multiply(dy, a, db);
    }

    /// <summary>y = alpha * x + beta * y. Backward: dx = alpha * dy.</summary>
    public static void Scale(Tensor x, float alpha, Tensor y, float beta = 0f)
    {
        var ops = Op.Family<IPointwiseOps>("Scale", ("x", x), ("y", y));
        F32("Scale", ("x", x), ("y", y));
        Op.SameShape("Scale", "y", y, "x", x);
        ops.Scale(x, alpha, beta, y);
    }

    public static void Activate(Activation activation, Tensor x, Tensor y)
    {
        var ops = Op.Family<IPointwiseOps>(activation.ToString(), ("x", x), ("y", y));
        F32(activation.ToString(), ("x", x), ("y", y));
        Op.SameShape(activation.ToString(), "y", y, "x", x);
        ops.Activate(activation, x, y);
    }

    public static void ActivateBackward(Activation activation, Tensor x, Tensor dy, Tensor dx)
    {
        string op = activation + "Backward";
        var ops = Op.Family<IPointwiseOps>(op, ("x", x), ("dy", dy), ("dx", dx));
        F32(op, ("x", x), ("dy", dy), ("dx", dx));
        Op.SameShape(op, "dy", dy, "x", x);
        Op.SameShape(op, "dx", dx, "x", x);
        ops.ActivateBackward(activation, x, dy, dx);
    }

    public static void SumLastAxis(Tensor x, Tensor y)
    {
        var ops = Op.Family<IPointwiseOps>("SumLastAxis", ("x", x), ("y", y));
        F32("SumLastAxis", ("x", x), ("y", y));
        Op.Rank("SumLastAxis", "x", x, 1, 4);
        Op.ShapeIs("SumLastAxis", "y", y, new Shape(x.Shape.Dims[..^1].ToArray()), $"(x {x.Shape} without its last axis)");
        Op.DistinctOutput("SumLastAxis", "y", y, "x", x);
        ops.SumLastAxis(x, y);
    }

    public static void SumLastAxisBackward(Tensor dy, Tensor dx)
    {
        var ops = Op.Family<IPointwiseOps>("SumLastAxisBackward", ("dy", dy), ("dx", dx));
        F32("SumLastAxisBackward", ("dy", dy), ("dx", dx));
        Op.Rank("SumLastAxisBackward", "dx", dx, 1, 4);
        Op.ShapeIs("SumLastAxisBackward", "dy", dy, new Shape(dx.Shape.Dims[..^1].ToArray()), $"(dx {dx.Shape} without its last axis)");
        ops.BroadcastLastAxis(dy, dx);
    }

    public static void Convert(Tensor source, Tensor destination)
    {
        var ops = Op.Family<IPointwiseOps>("Convert", ("source", source), ("destination", destination));
        Op.SameShape("Convert", "destination", destination, "source", source);
        Op.DistinctOutput("Convert", "destination", destination, "source", source);
        ops.Convert(source, destination);
    }

    /// <summary>Returns a new tensor of <paramref name="dtype"/> holding <paramref name="source"/>'s values.</summary>
    public static Tensor Convert(Tensor source, DType dtype)
    {
        var result = Tensor.Empty(source.Backend, source.Shape, dtype);
        try { Convert(source, result); } catch { result.Dispose(); throw; }
        return result;
    }

    public static void Fill(Tensor y, float value)
    {
        var ops = Op.Family<IPointwiseOps>("Fill", ("y", y));
        F32("Fill", ("y", y));
        ops.Fill(y, value);
    }

    private static IPointwiseOps Binary(string op, Tensor a, Tensor b, Tensor y)
    {
        var ops = Op.Family<IPointwiseOps>(op, ("a", a), ("b", b), ("y", y));
        F32(op, ("a", a), ("b", b), ("y", y));
        Op.SameShape(op, "b", b, "a", a);
        Op.SameShape(op, "y", y, "a", a);
        return ops;
    }

    private static void F32(string op, params ReadOnlySpan<(string Name, Tensor Tensor)> tensors)
    {
        foreach (var (name, t) in tensors) Op.DTypeIs(op, name, t, DType.F32);
    }
}
