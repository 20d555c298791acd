using FastWeights.Engine.Cpu.Gemm;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu;

// GEMM: C[b] = alpha op(A[b]) op(B[b]) + beta C[b]. Small f32 problems take a direct path; the rest
// run the packed, cache-blocked kernel in Gemm/ (BlockedGemm) with the widest micro-kernel the
// machine accelerates, chosen once at JIT time.
public sealed unsafe partial class CpuBackend : IGemmOps
{
    public void Gemm(in GemmProblem p)
    {
        if (p.Batch == 0 || p.M == 0 || p.N == 0) return;
        if (p.K == 0 || p.Alpha == 0f)
        {
            // No product to add: C = beta C, and beta == 0 must not read C (it may hold NaN).
            var c = new Span<float>(F32(p.C), checked((int)((long)p.Batch * p.M * p.N)));
            if (p.Beta == 0f) c.Clear();
            else System.Numerics.Tensors.TensorPrimitives.Multiply(c, p.Beta, c);
            return;
        }
        if (SmallGemm.Applies(p)) SmallGemm.Run(p);
        else if (MicroKernel512x14x32.IsSupported) BlockedGemm<MicroKernel512x14x32>.Run(p, Threads);
        else if (MicroKernel256x6x16.IsSupported) BlockedGemm<MicroKernel256x6x16>.Run(p, Threads);
        else BlockedGemm<MicroKernelScalar4x4>.Run(p, Threads);
    }

    /// <summary>The blocked GEMM's micro-kernel and blocking on this machine (as `fastweights devices`
    /// prints it), e.g. "14 x 32 Vector512, KC 1024, MC 70, NC 512".</summary>
    public static string GemmDescription =>
        MicroKernel512x14x32.IsSupported ? Describe<MicroKernel512x14x32>("Vector512") :
        MicroKernel256x6x16.IsSupported ? Describe<MicroKernel256x6x16>("Vector256") : Describe<MicroKernelScalar4x4>("scalar");

    /// <summary>The processor vendor from CPUID ("AuthenticAMD", "GenuineIntel"; empty off x86).</summary>
    public static string ProcessorVendor => CpuVendor.Name;

    private static string Describe<TKernel>(string lanes) where TKernel : struct, IGemmMicroKernel =>
        $"{TKernel.Mr} x {TKernel.Nr} {lanes}, KC {BlockedGemm<TKernel>.Kc}, MC {BlockedGemm<TKernel>.Mc}, NC {BlockedGemm<TKernel>.Nc}";
}
