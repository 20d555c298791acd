using FastWeights.Engine.Numerics;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu;

public sealed unsafe partial class CpuBackend : IGemmOps
{
    public void Gemm(in GemmProblem p)
    {
        // Placeholder kernel (plain triple loop); replaced by the packed, blocked GEMM in Gemm/.
        int m = p.M, n = p.N, k = p.K;
        float* pc = F32(p.C);
        float[] a = ToF32(p.A), b = ToF32(p.B);
        for (int batch = 0; batch < p.Batch; batch++)
        {
            long oa = batch * p.BatchStrideA, ob = batch * p.BatchStrideB;
            float* c = pc + (long)batch * m * n;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    float sum = 0;
                    for (int l = 0; l < k; l++)
                    {
                        float av = p.TransposeA ? a[oa + (long)l * m + i] : a[oa + (long)i * k + l];
                        float bv = p.TransposeB ? b[ob + (long)j * k + l] : b[ob + (long)l * n + j];
                        sum += av * bv;
                    }
                    c[(long)i * n + j] = p.Alpha * sum + (p.Beta == 0f ? 0f : p.Beta * c[(long)i * n + j]);
                }
        }
    }

    private static float[] ToF32(Tensor t)
    {
        var values = new float[t.ElementCount];
        Float16Conversions.Decode(new ReadOnlySpan<byte>(Bytes(t), (int)t.ByteCount), t.DType, values);
        return values;
    }
}
