using System.Runtime.CompilerServices;

// The kernel tests (tests/Engine.Tests/CpuGemmKernelTests.cs) run each micro-kernel through the
// blocked driver directly, including the fallbacks this machine would not choose.
[assembly: InternalsVisibleTo("Engine.Tests")]
// The micro-kernel bench (bench/Gemm/CpuMicroKernelBench.cs) runs the kernels alone.
[assembly: InternalsVisibleTo("FastWeights.Bench")]
