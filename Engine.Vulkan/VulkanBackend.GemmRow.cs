using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// shaders/gemm/gemm_row.comp: GEMMs of one output row (M = 1) in f32 with B stored [K, N], such as
// a bias gradient ones^T dY, where the tiled kernel would compute a 128-row tile for the one row
// (127/128 of its work wasted). This reads B once, split over K into enough parts to fill the
// device, then adds the partial rows.
public sealed partial class VulkanBackend
{
    private static bool UsesRowKernel(in GemmProblem p) =>
        p.M == 1 && !p.TransposeB && p.A.DType == DType.F32 && p.B.DType == DType.F32 && p.K > 0;

    private void GemmRow(in GemmProblem p)
    {
        int columnBlocks = (p.N + 63) / 64;
        long wanted = 4L * Math.Max(Capabilities.ComputeUnits, 32);            // workgroups of the first pass
        int splits = (int)Math.Clamp(wanted / ((long)columnBlocks * p.Batch), 1, Math.Max(1, Math.Min(64, p.K / 256)));
        int part = (p.K + splits - 1) / splits;
        splits = (p.K + part - 1) / part;
        using var partials = Tensor.Empty(this, new Shape(p.Batch, splits, p.N));
        Span<byte> bytes = stackalloc byte[64];
        for (int pass = 1; pass >= 0; pass--)
        {
            var push = new PushConstants(bytes);
            push.Address(p.A);
            push.Address(p.B);
            push.Address(partials);
            push.Address(p.C);
            push.Append(p.N);
            push.Append(p.K);
            push.Append(part);
            push.Append(splits);
            push.Append(checked((uint)p.BatchStrideA));
            push.Append(checked((uint)p.BatchStrideB));
            push.Append(p.Alpha);
            push.Append(p.Beta);
            var kernel = Kernels.Get("gemm/gemm_row", [pass]);
            if (pass == 1) Dispatch(kernel, push, (uint)columnBlocks, (uint)splits, (uint)p.Batch);
            else Dispatch(kernel, push, Groups(p.N, 256), 1, (uint)p.Batch);
        }
    }
}
