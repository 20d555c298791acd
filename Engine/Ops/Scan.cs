namespace FastWeights.Engine.Ops;

/// <summary>The first-order linear scan h_t = a_t * h_{t-1} + x_t, elementwise over channels.
/// Layouts: a, x, h [B, T, C]; h0 [B, C]. f32.</summary>
public interface IScanOps
{
    void ScanForward(Tensor a, Tensor x, Tensor? h0, Tensor h);
    void ScanBackward(Tensor a, Tensor? h0, Tensor h, Tensor dh, Tensor da, Tensor dx, Tensor? dh0);
}

public static class Scan
{
    /// <summary>h_t = a_t h_{t-1} + x_t for t = 0..T-1, with h_{-1} = h0 (zeros when null).</summary>
    public static void Forward(Tensor a, Tensor x, Tensor h, Tensor? h0 = null)
    {
        const string op = "ScanForward";
        var ops = Op.Family<IScanOps>(op, ("a", a), ("x", x), ("h", h), ("h0", h0));
        Check(op, a, x, h, h0);
        Op.DistinctOutput(op, "h", h, "a", a);
        Op.DistinctOutput(op, "h", h, "x", x);
        ops.ScanForward(a, x, h0, h);
    }

    /// <summary>Given dh (the gradient of every h_t, including what flows in from later use),
    /// the reverse scan g_t = dh_t + a_{t+1} g_{t+1} gives dx_t = g_t, da_t = g_t h_{t-1},
    /// dh0 = a_0 g_0. <paramref name="h"/> is the forward's output.</summary>
    public static void Backward(Tensor a, Tensor h, Tensor dh, Tensor da, Tensor dx, Tensor? h0 = null, Tensor? dh0 = null)
    {
        const string op = "ScanBackward";
        var ops = Op.Family<IScanOps>(op, ("a", a), ("h", h), ("dh", dh), ("da", da), ("dx", dx), ("h0", h0), ("dh0", dh0));
        Check(op, a, dh, h, h0);
        Op.SameShape(op, "da", da, "a", a);
        Op.SameShape(op, "dx", dx, "a", a);
        Op.DTypeIs(op, "da", da, DType.F32);
        Op.DTypeIs(op, "dx", dx, DType.F32);
        if (dh0 is not null)
        {
            Op.ShapeIs(op, "dh0", dh0, new Shape(a.Shape[0], a.Shape[2]), "([B, C] of a " + a.Shape + ")");
            Op.DTypeIs(op, "dh0", dh0, DType.F32);
        }
        ops.ScanBackward(a, h0, h, dh, da, dx, dh0);
    }

    private static void Check(string op, Tensor a, Tensor x, Tensor h, Tensor? h0)
    {
        Op.Rank(op, "a", a, 3, 3);
        Op.DTypeIs(op, "a", a, DType.F32);
        Op.DTypeIs(op, "x", x, DType.F32);
        Op.DTypeIs(op, "h", h, DType.F32);
        Op.SameShape(op, "x", x, "a", a);
        Op.SameShape(op, "h", h, "a", a);
        if (h0 is not null)
        {
            Op.ShapeIs(op, "h0", h0, new Shape(a.Shape[0], a.Shape[2]), "([B, C] of a " + a.Shape + ")");
            Op.DTypeIs(op, "h0", h0, DType.F32);
        }
    }
}
