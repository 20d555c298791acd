namespace FastWeights.Engine.Ops;

/// <summary>One batched GEMM, fully resolved: C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b] for
/// b in [0, Batch). op(A) is M x K, op(B) is K x N, C is M x N, all row-major. A stored operand is
/// [rows, cols] = [M, K] (or [K, M] when transposed); <see cref="BatchStrideA"/> is 0 when one A is
/// shared by every batch (a rank-2 A), likewise B. C always has its own matrix per batch.</summary>
public readonly record struct GemmProblem(
    Tensor A, Tensor B, Tensor C,
    bool TransposeA, bool TransposeB,
    float Alpha, float Beta,
    int Batch, int M, int N, int K,
    long BatchStrideA, long BatchStrideB)
{
    /// <summary>Leading dimension (row length in elements) of the stored A and B.</summary>
    public int LeadingA => TransposeA ? M : K;
    public int LeadingB => TransposeB ? K : N;
}

/// <summary>Batched GEMM with transpose flags, alpha and beta. A and B: f32, f16 or bf16 (the same);
/// C: f32.</summary>
public interface IGemmOps
{
    void Gemm(in GemmProblem problem);
}

public static class Gemm
{
    private const string OpName = "Gemm";

    /// <summary>C = alpha * op(A) op(B) + beta * C. Shapes: A [..., M, K] ([..., K, M] if transposeA),
    /// B [..., K, N] ([..., N, K] if transposeB), C [..., M, N]; the leading axes (up to two) are the
    /// batch. A rank-2 A or B is shared by every batch of C.</summary>
    public static void Forward(Tensor a, Tensor b, Tensor c, bool transposeA = false, bool transposeB = false, float alpha = 1f, float beta = 0f)
    {
        var ops = Op.Family<IGemmOps>(OpName, ("a", a), ("b", b), ("c", c));
        ops.Gemm(Resolve(a, b, c, transposeA, transposeB, alpha, beta));
    }

    /// <summary>Allocates C = op(A) op(B) on A's backend.</summary>
    public static Tensor MatMul(Tensor a, Tensor b, bool transposeA = false, bool transposeB = false)
    {
        Op.Family<IGemmOps>(OpName, ("a", a), ("b", b));
        Op.Rank(OpName, "a", a, 2, 4);
        Op.Rank(OpName, "b", b, 2, 4);
        int m = transposeA ? a.Shape[-1] : a.Shape[-2];
        int n = transposeB ? b.Shape[-2] : b.Shape[-1];
        var batchOwner = a.Rank >= b.Rank ? a : b;
        int[] dims = batchOwner.Shape.Dims.ToArray();
        dims[^2] = m;
        dims[^1] = n;
        var c = Tensor.Empty(a.Backend, new Shape(dims));
        try { Forward(a, b, c, transposeA, transposeB); }
        catch { c.Dispose(); throw; }
        return c;
    }

    /// <summary>Gradients of C = alpha * op(A) op(B) (+ beta * C_old, whose gradient is beta * dC and is
    /// not formed here): dA = alpha * dC op(B)^T laid out like A, dB = alpha * op(A)^T dC laid out like B.
    /// A rank-2 (shared) operand receives the sum over the batch. Either gradient may be null.
    /// With <paramref name="accumulate"/> the gradients are added to what dA, dB hold.</summary>
    public static void Backward(Tensor a, Tensor b, Tensor dc, Tensor? da, Tensor? db, bool transposeA = false, bool transposeB = false, float alpha = 1f, bool accumulate = false)
    {
        var p = Resolve(a, b, dc, transposeA, transposeB, alpha, 0f);
        float beta = accumulate ? 1f : 0f;
        if (da is not null)
        {
            Op.SameShape(OpName + "Backward", "da", da, "a", a);
            // op(A) = dC op(B)^T  =>  stored A = (dC op(B)^T) or its transpose.
            if (!transposeA) GradientOfShared(dc, b, da, false, !transposeB, alpha, beta, p.BatchStrideA == 0, p.Batch);
            else GradientOfShared(b, dc, da, transposeB, true, alpha, beta, p.BatchStrideA == 0, p.Batch);
        }
        if (db is not null)
        {
            Op.SameShape(OpName + "Backward", "db", db, "b", b);
            // op(B) = op(A)^T dC  =>  stored B = (op(A)^T dC) or its transpose.
            if (!transposeB) GradientOfShared(a, dc, db, !transposeA, false, alpha, beta, p.BatchStrideB == 0, p.Batch);
            else GradientOfShared(dc, a, db, true, transposeA, alpha, beta, p.BatchStrideB == 0, p.Batch);
        }
    }

    // grad = alpha * op(x) op(y) (+ beta * grad); when the gradient belongs to a shared (rank-2)
    // operand and the problem is batched, sum the per-batch products into it.
    private static void GradientOfShared(Tensor x, Tensor y, Tensor grad, bool tx, bool ty, float alpha, float beta, bool shared, int batch)
    {
        if (!shared || batch == 1 || (x.Rank == 2 && y.Rank == 2))
        {
            if (shared && batch == 1 && x.Rank > 2) x = Flatten(x);
            if (shared && batch == 1 && y.Rank > 2) y = Flatten(y);
            Forward(x, y, grad, tx, ty, alpha, beta);
            return;
        }
        for (int i = 0; i < batch; i++)
        {
            using var xi = x.Rank == 2 ? null : Flatten(x).SliceRows(i, 1).Reshape(new Shape(x.Shape[-2], x.Shape[-1]));
            using var yi = y.Rank == 2 ? null : Flatten(y).SliceRows(i, 1).Reshape(new Shape(y.Shape[-2], y.Shape[-1]));
            Forward(xi ?? x, yi ?? y, grad, tx, ty, alpha, i == 0 ? beta : 1f);
        }
    }

    private static Tensor Flatten(Tensor t) => t.Rank == 3 ? t : t.Reshape(new Shape((int)(t.ElementCount / (t.Shape[-2] * (long)t.Shape[-1])), t.Shape[-2], t.Shape[-1]));

    /// <summary>Checks shapes and dtypes and resolves the batched problem.</summary>
    public static GemmProblem Resolve(Tensor a, Tensor b, Tensor c, bool transposeA, bool transposeB, float alpha, float beta)
    {
        Op.Rank(OpName, "a", a, 2, 4);
        Op.Rank(OpName, "b", b, 2, 4);
        Op.Rank(OpName, "c", c, 2, 4);
        Op.DTypeIs(OpName, "a", a, DType.F32, DType.F16, DType.BF16);
        if (b.DType != a.DType)
            throw new OpArgumentException(OpName, "b", $"{b.Shape} has dtype {b.DType.Name()} but 'a' {a.Shape} has {a.DType.Name()}; they must match");
        Op.DTypeIs(OpName, "c", c, DType.F32);
        int m = transposeA ? a.Shape[-1] : a.Shape[-2];
        int k = transposeA ? a.Shape[-2] : a.Shape[-1];
        int kb = transposeB ? b.Shape[-1] : b.Shape[-2];
        int n = transposeB ? b.Shape[-2] : b.Shape[-1];
        if (kb != k)
            throw new OpArgumentException(OpName, "b", $"has shape {b.Shape}{(transposeB ? " (transposed)" : "")} whose inner dimension {kb} differs from {k}, the inner dimension of 'a' {a.Shape}{(transposeA ? " (transposed)" : "")}");
        if (c.Shape[-2] != m || c.Shape[-1] != n)
            throw new OpArgumentException(OpName, "c", $"has shape {c.Shape} but op(a) op(b) is {m} x {n} (a: {a.Shape}, b: {b.Shape})");
        long batchC = 1;
        foreach (int d in c.Shape.Dims[..^2]) batchC *= d;
        if (a.Rank > 2 && (a.Rank != c.Rank || !a.Shape.Dims[..^2].SequenceEqual(c.Shape.Dims[..^2])))
            throw new OpArgumentException(OpName, "a", $"has batch shape {a.Shape} that differs from c {c.Shape}");
        if (b.Rank > 2 && (b.Rank != c.Rank || !b.Shape.Dims[..^2].SequenceEqual(c.Shape.Dims[..^2])))
            throw new OpArgumentException(OpName, "b", $"has batch shape {b.Shape} that differs from c {c.Shape}");
        Op.DistinctOutput(OpName, "c", c, "a", a);
        Op.DistinctOutput(OpName, "c", c, "b", b);
        if (batchC > int.MaxValue) throw new OpArgumentException(OpName, "c", $"{c.Shape} has too many batches");
        return new GemmProblem(a, b, c, transposeA, transposeB, alpha, beta, (int)batchC, m, n, k,
            a.Rank == 2 ? 0 : (long)m * k, b.Rank == 2 ? 0 : (long)k * n);
    }
}
