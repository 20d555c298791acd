using System.Numerics.Tensors;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu.Gemm;

/// <summary>Direct path for small f32 problems (M N K below <see cref="MaxVolume"/>), where packing
/// would cost as much as the product. One row of C at a time, accumulated in f32 scratch:
/// B not transposed: acc = sum_l op(A)[i, l] B[l, :] (vector axpy over contiguous rows of B);
/// B transposed:     acc[j] = dot(op(A)[i, :], B^T[j, :]) (contiguous rows of the stored B).
/// Then C[i, :] = alpha acc + beta C[i, :], reading C only when beta != 0.</summary>
internal static unsafe class SmallGemm
{
    public const long MaxVolume = 32 * 32 * 32;

    public static bool Applies(in GemmProblem p) => p.A.DType == DType.F32 && (long)p.M * p.N * p.K < MaxVolume;

    public static void Run(in GemmProblem p)
    {
        var a = GemmOperand.A(p);
        var b = GemmOperand.B(p);
        float* c = CpuBackend.F32(p.C);
        var ws = GemmWorkspace.ForThisThread;
        float* scratch = ws.Scratch(p.K + p.N);
        for (int batch = 0; batch < p.Batch; batch++)
            Matrix(a.AtBatch(batch), b.AtBatch(batch), c + (long)batch * p.M * p.N, p.M, p.N, p.K, p.Alpha, p.Beta, scratch);
    }

    private static void Matrix(in GemmOperand a, in GemmOperand b, float* c, int m, int n, int k, float alpha, float beta, float* scratch)
    {
        float* pa = (float*)a.Data, pb = (float*)b.Data;
        var accumulator = new Span<float>(scratch, n);
        float* gathered = scratch + n;
        for (int i = 0; i < m; i++)
        {
            // Row i of op(A), contiguous.
            float* aRow = pa + (long)i * k;
            if (a.Transposed)
            {
                for (int l = 0; l < k; l++) gathered[l] = pa[(long)l * m + i];
                aRow = gathered;
            }
            var aSpan = new ReadOnlySpan<float>(aRow, k);
            if (!b.Transposed)
            {
                accumulator.Clear();
                for (int l = 0; l < k; l++)
                    TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(pb + (long)l * n, n), aRow[l], accumulator, accumulator);
            }
            else
            {
                for (int j = 0; j < n; j++) accumulator[j] = TensorPrimitives.Dot(aSpan, new ReadOnlySpan<float>(pb + (long)j * k, k));
            }
            var cRow = new Span<float>(c + (long)i * n, n);
            if (beta == 0f) TensorPrimitives.Multiply(accumulator, alpha, cRow);
            else
            {
                TensorPrimitives.Multiply(cRow, beta, cRow);
                TensorPrimitives.MultiplyAdd(accumulator, alpha, cRow, cRow);
            }
        }
    }
}
