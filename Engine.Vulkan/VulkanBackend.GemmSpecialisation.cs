using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// Pipelines specialised per GEMM shape. The tensor-core kernels without shared memory of their own
// (KHR direct, cooperative-matrix-2) run faster when the driver sees M, N, K at compile time (the
// register-pipelined KHR direct kernel: 76 -> 114 TFLOP/s at f16 4096^3 on the H200 in one run,
// bench/results/2026-12-01-h200-run10.txt), but each new shape then costs a pipeline compile. A
// workload of ever new shapes (prompts of every length, batches of varying token counts) would
// compile one per call and keep them all, so each kernel variant specialises at most
// MaxSpecialisedGemmShapes shapes, the first it meets; its further shapes share its unspecialised
// pipeline (sizes from the push constants), compiled once. The tile tuner stops likewise
// (MaxTunedGemmShapes, VulkanBackend.GemmTuning.cs).
public sealed partial class VulkanBackend
{
    private readonly record struct GemmShape(int M, int N, int K, bool TransposeA, bool TransposeB);

    private readonly Dictionary<string, HashSet<GemmShape>> _specialisedGemmShapes = [];

    /// <summary>Whether the tensor-core kernels without shared memory of their own (KHR direct and
    /// cooperative-matrix-2) get a pipeline specialised for each (M, N, K), so the driver sees the sizes
    /// at compile time; pipelines are cached per shape (FASTWEIGHTS_GEMM_SPECIALISE=0 turns it off).</summary>
    public bool SpecialiseGemmShapes { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_GEMM_SPECIALISE") != "0";

    /// <summary>Shapes (M, N, K and the transpose flags) each GEMM kernel variant gets a specialised
    /// pipeline for, at most; later new shapes run its unspecialised pipeline.</summary>
    public int MaxSpecialisedGemmShapes { get; set; } = 64;

    /// <summary>Whether this problem runs a pipeline of its variant specialised for its shape: yes for
    /// a shape specialised before, and for a new one while the variant has fewer than
    /// MaxSpecialisedGemmShapes (which it then counts).</summary>
    internal bool SpecialisesShape(string variant, in GemmProblem p) =>
        SpecialisesShape(variant, p.M, p.N, p.K, p.TransposeA, p.TransposeB);

    internal bool SpecialisesShape(string variant, int m, int n, int k, bool transposeA, bool transposeB)
    {
        var shape = new GemmShape(m, n, k, transposeA, transposeB);
        if (!WouldSpecialise(variant, shape)) return false;
        if (!_specialisedGemmShapes.TryGetValue(variant, out var shapes)) _specialisedGemmShapes[variant] = shapes = [];
        shapes.Add(shape);
        return true;
    }

    /// <summary>The same without counting the shape (benchmark labels).</summary>
    private bool WouldSpecialise(string variant, GemmShape shape) =>
        SpecialiseGemmShapes && (!_specialisedGemmShapes.TryGetValue(variant, out var shapes)
            || shapes.Contains(shape) || shapes.Count < MaxSpecialisedGemmShapes);
}
