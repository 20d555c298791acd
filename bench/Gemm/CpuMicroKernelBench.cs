using System.Diagnostics;
using System.Runtime.InteropServices;
using FastWeights.Engine.Cpu.Gemm;

namespace FastWeights.Bench;

/// <summary>The CPU GEMM's micro-kernel alone, on one thread: the two loops around it (one B sliver
/// against a run of A slivers, then the next B sliver) over packed operands that stay in L2, as in
/// the blocked driver's inner loops, but with no packing, no threads and no edges. Its rate against
/// the FMA peak is the kernel's efficiency; against the whole GEMM's rate on one thread it shows what
/// the driver around the kernel costs. `fastweights bench gemm-kernel [--kc N]`.</summary>
public static unsafe class CpuMicroKernelBench
{
    public static IEnumerable<BenchResult> Run(int kc, int aSlivers = 18, int bSlivers = 16, int rounds = 5)
    {
        if (MicroKernel512x14x32.IsSupported) yield return Measure<MicroKernel512x14x32>("512 14x32", kc, aSlivers, bSlivers, rounds);
        if (MicroKernel256x6x16.IsSupported) yield return Measure<MicroKernel256x6x16>("256 6x16", kc, aSlivers, bSlivers, rounds);
    }

    private static BenchResult Measure<TKernel>(string name, int kc, int aSlivers, int bSlivers, int rounds) where TKernel : struct, IGemmMicroKernel
    {
        int mr = TKernel.Mr, nr = TKernel.Nr;
        long aFloats = (long)mr * kc * aSlivers, bFloats = (long)nr * kc * bSlivers, cFloats = (long)mr * aSlivers * nr * bSlivers;
        float* a = Allocate(aFloats), b = Allocate(bFloats), c = Allocate(cFloats);
        try
        {
            int ldc = nr * bSlivers;
            double flopsPerPass = 2.0 * mr * nr * kc * aSlivers * bSlivers;
            var rates = new double[rounds];
            for (int round = 0; round < rounds; round++)
            {
                // Passes over the block for about 200 ms; beta = 1 as on every k block after the first.
                long passes = 0;
                var clock = Stopwatch.StartNew();
                do
                {
                    for (int j = 0; j < bSlivers; j++)
                        for (int i = 0; i < aSlivers; i++)
                            TKernel.Run(kc, a + (long)i * mr * kc, b + (long)j * nr * kc, c + (long)i * mr * ldc + j * nr, ldc, 1f, 1f);
                    passes++;
                } while (clock.ElapsedMilliseconds < 200);
                rates[round] = passes * flopsPerPass / clock.Elapsed.TotalSeconds / 1e9;
            }
            Array.Sort(rates);
            double rate = rates[rounds / 2];
            return new BenchResult($"gemm micro-kernel {name} kc {kc}, {aSlivers} x {bSlivers} slivers in L2 (one thread)", "cpu", flopsPerPass / rate / 1e6, rate, "GFLOP/s");
        }
        finally
        {
            NativeMemory.AlignedFree(a); NativeMemory.AlignedFree(b); NativeMemory.AlignedFree(c);
        }
    }

    // Values in [0.5, 1.5), so the accumulators neither vanish nor overflow over the passes' few seconds.
    private static float* Allocate(long floats)
    {
        var p = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float) + 64), 64);
        for (long i = 0; i < floats; i++) p[i] = 0.5f + (i * 2654435761L % 1000) / 1000f;
        return p;
    }
}
