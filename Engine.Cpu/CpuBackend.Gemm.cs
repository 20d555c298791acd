using FastWeights.Engine.Cpu.Gemm;
using FastWeights.Engine.Numerics;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu;

// GEMM: Gemm/BlockedGemm.cs (packing, blocking, threads) around the register-blocked micro-kernels
// Gemm/MicroKernel512.cs (AVX-512) and Gemm/MicroKernel256.cs (AVX2). f16/bf16 operands are
// widened to f32 once per call before packing.
public sealed unsafe partial class CpuBackend : IGemmOps
{
    public void Gemm(in GemmProblem p)
    {
        float[]? wideA = p.A.DType == DType.F32 ? null : Widen(p.A);
        float[]? wideB = p.B.DType == DType.F32 ? null : Widen(p.B);
        fixed (float* pa = wideA, pb = wideB)
        {
            float* a = wideA is null ? F32(p.A) : pa;
            float* b = wideB is null ? F32(p.B) : pb;
            float* c = F32(p.C);
            for (int batch = 0; batch < p.Batch; batch++)
                BlockedGemm.Multiply(a + batch * p.BatchStrideA, b + batch * p.BatchStrideB, c + (long)batch * p.M * p.N,
                    p.M, p.N, p.K, p.TransposeA, p.TransposeB, p.Alpha, p.Beta, Threads);
        }
    }

    private static float[] Widen(Tensor t)
    {
        var values = new float[t.ElementCount];
        Float16Conversions.Decode(new ReadOnlySpan<byte>(Bytes(t), (int)t.ByteCount), t.DType, values);
        return values;
    }
}
