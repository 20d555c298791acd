namespace FastWeights.Engine.Cpu.Gemm;

/// <summary>A register-blocked GEMM micro-kernel over packed operands (the BLIS inner kernel):
/// <c>C[r, j] = alpha * sum_l A[r, l] B[l, j] + beta * C[r, j]</c> for an <see cref="Mr"/> x <see cref="Nr"/> tile.
/// <para>Packed layouts (see <see cref="GemmPacking"/>): the A sliver holds <c>a[l * Mr + r]</c> (column l
/// of an Mr-tall block of rows, k-major), the B sliver holds <c>b[l * Nr + j]</c> (row l of an Nr-wide
/// block of columns), both for l in [0, kc). Rows and columns past the matrix edge are packed as zeros,
/// so the kernel always computes a full tile. C is row-major with row stride <c>ldc</c>; when
/// beta == 0 C is only written, never read (it may hold NaN).</para>
/// Implementations are structs so that the blocked driver is specialised (and inlined) per kernel.</summary>
internal unsafe interface IGemmMicroKernel
{
    static abstract int Mr { get; }
    static abstract int Nr { get; }
    /// <summary>Blocking of the driver around this kernel (<see cref="BlockedGemm{TKernel}"/>): the depth KC
    /// of the packed blocks, the rows MC of the packed A block and the columns NC of the packed B panel,
    /// chosen for the caches of the CPUs that run the kernel.</summary>
    static abstract int BlockDepth { get; }
    static abstract int BlockRows { get; }
    static abstract int BlockColumns { get; }
    /// <summary>True when the instructions the kernel relies on are accelerated on this machine.</summary>
    static abstract bool IsSupported { get; }
    static abstract void Run(int kc, float* a, float* b, float* c, nint ldc, float alpha, float beta);
}
