namespace FastWeights.Engine.Ops;

/// <summary>Feature maps phi for linear attention, applied to each row (the last axis).</summary>
public enum FeatureMapKind
{
    /// <summary>phi(x) = x.</summary>
    Identity,
    /// <summary>phi(x) = max(x, 0).</summary>
    Relu,
    /// <summary>phi(x) = elu(x) + 1 = x + 1 for x &gt; 0, e^x otherwise.</summary>
    EluPlusOne,
    /// <summary>DPFP-nu (Schlag et al. 2021), output dimension 2 d nu. With r = [relu(x), relu(-x)]
    /// in R^{2d}, output element (j - 1) 2d + i (j = 1..nu, i = 0..2d-1) is
    /// r_i * r_{(i + j) mod 2d}: nu blocks of 2d, block j the product of r with r shifted left by j.
    /// (torch.roll(r, shifts=j) would pair r_i with r_{(i - j) mod 2d}: the same products, in another
    /// order within each block.)</summary>
    Dpfp,
}

/// <summary>A feature map: its kind, nu for DPFP (1, 2 or 3; ignored otherwise), and optional sum
/// normalisation y = phi(x) / (sum_i phi(x)_i + <see cref="FeatureMaps.SumEpsilon"/>), which needs
/// a non-negative map (not <see cref="FeatureMapKind.Identity"/>).</summary>
public readonly record struct FeatureMap(FeatureMapKind Kind, int Nu = 1, bool SumNormalise = false)
{
    public static FeatureMap Identity => new(FeatureMapKind.Identity);
    public static FeatureMap Relu => new(FeatureMapKind.Relu);
    public static FeatureMap EluPlusOne => new(FeatureMapKind.EluPlusOne);
    public static FeatureMap Dpfp(int nu) => new(FeatureMapKind.Dpfp, nu);

    /// <summary>Output width for an input width of <paramref name="inputDim"/>.</summary>
    public int OutputDim(int inputDim) => Kind == FeatureMapKind.Dpfp ? 2 * inputDim * Nu : inputDim;

    public override string ToString() => (Kind == FeatureMapKind.Dpfp ? $"Dpfp(nu={Nu})" : Kind.ToString()) + (SumNormalise ? "+sum-normalised" : "");
}

/// <summary>Feature maps and L2 normalisation over the last axis, f32 only. Backward passes take the
/// forward's input x (and recompute what they need from it) and overwrite dx.</summary>
public interface IFeatureMapOps
{
    /// <summary>y[.., :] = phi(x[.., :]); y's last axis is map.OutputDim(x's last axis).</summary>
    void FeatureMapForward(FeatureMap map, Tensor x, Tensor y);
    /// <summary>dx = (d phi / dx)^T dy, row by row.</summary>
    void FeatureMapBackward(FeatureMap map, Tensor x, Tensor dy, Tensor dx);
    /// <summary>y = x / n, n = sqrt(x . x + epsilon), per row.</summary>
    void L2Normalize(Tensor x, Tensor y, float epsilon);
    /// <summary>dx = (dy - y (y . dy)) / n, per row.</summary>
    void L2NormalizeBackward(Tensor x, Tensor dy, Tensor dx, float epsilon);
}

/// <summary>Checked entry points of the feature-map family. Tensors have rank 1 to 4, e.g.
/// x [B, T, H, D]; every row (the last axis) is mapped on its own.</summary>
public static class FeatureMaps
{
    /// <summary>Added to the sum in sum normalisation: y = phi / (sum phi + 1e-6). Keeps an all-zero
    /// relu or DPFP row finite (it maps to zeros).</summary>
    public const float SumEpsilon = 1e-6f;

    /// <summary>L2 normalisation divides by sqrt(x . x + epsilon); the default 1e-6 only matters for
    /// rows with |x| near 1e-3 or below. The gradient is exact for this smoothed norm.</summary>
    public const float DefaultL2Epsilon = 1e-6f;

    public static void Forward(FeatureMap map, Tensor x, Tensor y)
    {
        const string op = "FeatureMapForward";
        var ops = Op.Family<IFeatureMapOps>(op, ("x", x), ("y", y));
        CheckMap(op, map);
        Rows(op, "x", x);
        Op.DTypeIs(op, "y", y, DType.F32);
        Op.ShapeIs(op, "y", y, WithLast(x.Shape, map.OutputDim(x.Shape[-1])), $"(x {x.Shape} mapped by {map})");
        Op.DistinctOutput(op, "y", y, "x", x);
        Op.Finite(op, "x", x);
        ops.FeatureMapForward(map, x, y);
    }

    public static void Backward(FeatureMap map, Tensor x, Tensor dy, Tensor dx)
    {
        const string op = "FeatureMapBackward";
        var ops = Op.Family<IFeatureMapOps>(op, ("x", x), ("dy", dy), ("dx", dx));
        CheckMap(op, map);
        Rows(op, "x", x);
        Op.DTypeIs(op, "dy", dy, DType.F32);
        Op.DTypeIs(op, "dx", dx, DType.F32);
        Op.ShapeIs(op, "dy", dy, WithLast(x.Shape, map.OutputDim(x.Shape[-1])), $"(x {x.Shape} mapped by {map})");
        Op.SameShape(op, "dx", dx, "x", x);
        Op.DistinctOutput(op, "dx", dx, "x", x);
        Op.DistinctOutput(op, "dx", dx, "dy", dy);
        ops.FeatureMapBackward(map, x, dy, dx);
    }

    public static void L2Normalize(Tensor x, Tensor y, float epsilon = DefaultL2Epsilon)
    {
        const string op = "L2Normalize";
        var ops = Op.Family<IFeatureMapOps>(op, ("x", x), ("y", y));
        Rows(op, "x", x);
        Op.DTypeIs(op, "y", y, DType.F32);
        Op.SameShape(op, "y", y, "x", x);
        Op.DistinctOutput(op, "y", y, "x", x);
        Epsilon(op, epsilon);
        Op.Finite(op, "x", x);
        ops.L2Normalize(x, y, epsilon);
    }

    public static void L2NormalizeBackward(Tensor x, Tensor dy, Tensor dx, float epsilon = DefaultL2Epsilon)
    {
        const string op = "L2NormalizeBackward";
        var ops = Op.Family<IFeatureMapOps>(op, ("x", x), ("dy", dy), ("dx", dx));
        Rows(op, "x", x);
        Op.DTypeIs(op, "dy", dy, DType.F32);
        Op.DTypeIs(op, "dx", dx, DType.F32);
        Op.SameShape(op, "dy", dy, "x", x);
        Op.SameShape(op, "dx", dx, "x", x);
        Op.DistinctOutput(op, "dx", dx, "x", x);
        Op.DistinctOutput(op, "dx", dx, "dy", dy);
        Epsilon(op, epsilon);
        ops.L2NormalizeBackward(x, dy, dx, epsilon);
    }

    private static void CheckMap(string op, FeatureMap map)
    {
        if (!Enum.IsDefined(map.Kind)) throw new OpArgumentException(op, "map", $"has unknown kind {(int)map.Kind}");
        if (map.Kind == FeatureMapKind.Dpfp && map.Nu is < 1 or > 3)
            throw new OpArgumentException(op, "map", $"is DPFP with nu = {map.Nu}; nu must be 1, 2 or 3");
        if (map.SumNormalise && map.Kind == FeatureMapKind.Identity)
            throw new OpArgumentException(op, "map", "asks for sum normalisation of the identity map; it needs a non-negative map (relu, elu+1, DPFP)");
    }

    private static void Rows(string op, string name, Tensor x)
    {
        Op.Rank(op, name, x, 1, 4);
        Op.DTypeIs(op, name, x, DType.F32);
        if (x.Shape[-1] == 0) throw new OpArgumentException(op, name, $"has shape {x.Shape}; its last axis must not be empty");
    }

    private static void Epsilon(string op, float epsilon)
    {
        if (!(epsilon >= 0) || !float.IsFinite(epsilon)) throw new OpArgumentException(op, "epsilon", $"is {epsilon}; it must be finite and >= 0");
    }

    private static Shape WithLast(Shape s, int last)
    {
        int[] dims = s.Dims.ToArray();
        dims[^1] = last;
        return new Shape(dims);
    }
}
