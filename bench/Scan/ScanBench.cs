using FastWeights.Engine;
using FastWeights.Engine.Ops;

namespace FastWeights.Bench;

/// <summary>Scan forward+backward against its memory floor: the forward must read a and x and write
/// h; the backward must read a, h, dh and write da and dx: 8 tensor passes of B*T*C f32 in all.
/// The reported rate is those bytes over the measured time (GB/s), to compare with the device's
/// copy bandwidth.</summary>
public static class ScanBench
{
    public static IEnumerable<BenchResult> Run(IBackend backend, int b, int t, int c)
    {
        var shape = new Shape(b, t, c);
        using var a = Tensor.Uniform(backend, shape, 1, 0.5f, 1f);
        using var x = Tensor.Uniform(backend, shape, 2);
        using var h = Tensor.Empty(backend, shape);
        using var dh = Tensor.Uniform(backend, shape, 3);
        using var da = Tensor.Empty(backend, shape);
        using var dx = Tensor.Empty(backend, shape);
        double bytes = 4.0 * b * t * c;
        double fwd = DeltaRuleBench.Time(backend, () => Scan.Forward(a, x, h));
        yield return new BenchResult($"scan B{b} T{t} C{c} fwd (floor: 3 passes)", backend.Name, fwd, 3 * bytes / (fwd * 1e-3) / 1e9, "GB/s");
        double both = DeltaRuleBench.Time(backend, () => { Scan.Forward(a, x, h); Scan.Backward(a, h, dh, da, dx); });
        yield return new BenchResult($"scan B{b} T{t} C{c} fwd+bwd (floor: 8 passes)", backend.Name, both, 8 * bytes / (both * 1e-3) / 1e9, "GB/s");
    }

    /// <summary>A device-to-device copy of the same size: the bandwidth the floor is measured against.</summary>
    public static BenchResult Copy(IBackend backend, int b, int t, int c)
    {
        var shape = new Shape(b, t, c);
        using var x = Tensor.Uniform(backend, shape, 2);
        using var y = Tensor.Empty(backend, shape);
        double ms = DeltaRuleBench.Time(backend, () => backend.Copy(x.Storage, 0, y.Storage, 0, x.ByteCount));
        return new BenchResult($"copy {4.0 * b * t * c / 1e9:F2} GB (read + write)", backend.Name, ms, 2 * 4.0 * b * t * c / (ms * 1e-3) / 1e9, "GB/s");
    }
}
