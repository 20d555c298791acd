using FastWeights.Engine.Cpu.LinearAttention;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu;

// Feature maps and L2 normalisation, row by row: LinearAttention/FeatureMapKernels.cs. Rows are
// split into contiguous ranges over the threads once a tensor is large enough to pay for it.
public sealed unsafe partial class CpuBackend : IFeatureMapOps
{
    private const long RowParallelThreshold = 1 << 15; // elements

    public void FeatureMapForward(FeatureMap map, Tensor x, Tensor y)
    {
        int d = x.Shape[-1], outDim = map.OutputDim(d);
        float* px = F32(x), py = F32(y);
        OverRows(x.Shape.Rows, (long)outDim * x.Shape.Rows, (first, last) =>
        {
            var scratch = map.Kind == FeatureMapKind.Dpfp ? new float[2 * d] : [];
            for (long row = first; row < last; row++)
            {
                var yRow = new Span<float>(py + row * outDim, outDim);
                FeatureMapKernels.Phi(map, new ReadOnlySpan<float>(px + row * d, d), yRow, scratch);
                if (map.SumNormalise) FeatureMapKernels.SumNormalise(yRow);
            }
        });
    }

    public void FeatureMapBackward(FeatureMap map, Tensor x, Tensor dy, Tensor dx)
    {
        int d = x.Shape[-1], outDim = map.OutputDim(d);
        float* px = F32(x), pdy = F32(dy), pdx = F32(dx);
        OverRows(x.Shape.Rows, (long)outDim * x.Shape.Rows, (first, last) =>
        {
            // phi and dphi rows (sum normalisation), r and dr (DPFP)
            var phi = new float[outDim];
            var dphi = new float[outDim];
            var r = new float[2 * d];
            var dr = new float[2 * d];
            for (long row = first; row < last; row++)
            {
                var xRow = new ReadOnlySpan<float>(px + row * d, d);
                ReadOnlySpan<float> g = new(pdy + row * outDim, outDim);
                if (map.SumNormalise)
                {
                    FeatureMapKernels.Phi(map, xRow, phi, r);
                    FeatureMapKernels.SumNormaliseBackward(phi, g, dphi);
                    g = dphi;
                }
                FeatureMapKernels.PhiBackward(map, xRow, g, new Span<float>(pdx + row * d, d), r, dr);
            }
        });
    }

    public void L2Normalize(Tensor x, Tensor y, float epsilon)
    {
        int d = x.Shape[-1];
        float* px = F32(x), py = F32(y);
        OverRows(x.Shape.Rows, x.ElementCount, (first, last) =>
        {
            for (long row = first; row < last; row++)
                FeatureMapKernels.L2Normalize(new ReadOnlySpan<float>(px + row * d, d), new Span<float>(py + row * d, d), epsilon);
        });
    }

    public void L2NormalizeBackward(Tensor x, Tensor dy, Tensor dx, float epsilon)
    {
        int d = x.Shape[-1];
        float* px = F32(x), pdy = F32(dy), pdx = F32(dx);
        OverRows(x.Shape.Rows, x.ElementCount, (first, last) =>
        {
            for (long row = first; row < last; row++)
                FeatureMapKernels.L2NormalizeBackward(new ReadOnlySpan<float>(px + row * d, d), new ReadOnlySpan<float>(pdy + row * d, d),
                    new Span<float>(pdx + row * d, d), epsilon);
        });
    }

    /// <summary>Runs body(first, last) over [0, rows) split into one contiguous range per thread,
    /// or inline when the work is small.</summary>
    private void OverRows(long rows, long elements, Action<long, long> body)
    {
        int parts = elements < RowParallelThreshold ? 1 : (int)Math.Min(Threads, rows);
        if (parts <= 1) { body(0, rows); return; }
        Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = Threads },
            part => body(rows * part / parts, rows * (part + 1) / parts));
    }
}
