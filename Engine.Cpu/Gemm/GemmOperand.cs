using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu.Gemm;

/// <summary>One stored GEMM input (A or B) as the packing routines see it: element (row, col) of the
/// stored row-major matrix of batch b is at <c>Data + (b * BatchStride + row * Ld + col) * ElementSize</c>.
/// Transposed says the stored matrix is the transpose of the op() operand.</summary>
internal readonly unsafe struct GemmOperand(byte* data, DType type, nint ld, long batchStride, bool transposed)
{
    public readonly byte* Data = data;
    public readonly DType Type = type;
    public readonly nint Ld = ld;
    public readonly long BatchStride = batchStride;
    public readonly bool Transposed = transposed;

    public int ElementSize => Type == DType.F32 ? 4 : 2;

    /// <summary>The same operand moved to batch <paramref name="batch"/> (stride 0: shared).</summary>
    public GemmOperand AtBatch(int batch) => new(Data + batch * BatchStride * ElementSize, Type, Ld, 0, Transposed);

    /// <summary>The same operand from row <paramref name="first"/> of op() on (A: a part of C's rows).</summary>
    public GemmOperand OpRowsFrom(int first) => new(Data + (Transposed ? first : first * (long)Ld) * ElementSize, Type, Ld, BatchStride, Transposed);

    /// <summary>The same operand from column <paramref name="first"/> of op() on (B: a part of C's columns).</summary>
    public GemmOperand OpColumnsFrom(int first) => new(Data + (Transposed ? first * (long)Ld : first) * ElementSize, Type, Ld, BatchStride, Transposed);

    public static GemmOperand A(in GemmProblem p) =>
        new(CpuBackend.Bytes(p.A), p.A.DType, p.LeadingA, p.BatchStrideA, p.TransposeA);

    public static GemmOperand B(in GemmProblem p) =>
        new(CpuBackend.Bytes(p.B), p.B.DType, p.LeadingB, p.BatchStrideB, p.TransposeB);
}
