using System.Runtime.InteropServices;

namespace FastWeights.Engine.Cpu.Gemm;

/// <summary>Per-thread packing buffers for the blocked GEMM, 64-byte aligned, grown on demand and kept
/// for the thread's lifetime, so a GEMM allocates nothing once a thread has run one of its size.
/// Sizes are bounded by the blocking (A block MC x KC, B panel KC x NC): at most a few MB a thread.</summary>
internal sealed unsafe class GemmWorkspace
{
    [ThreadStatic] private static GemmWorkspace? s_current;

    public static GemmWorkspace ForThisThread => s_current ??= new GemmWorkspace();

    private Buffer _a, _b, _panel, _scratch, _tile;

    /// <summary>Packed A block.</summary>
    public float* A(long floats) => _a.Ensure(floats);
    /// <summary>Packed B panel.</summary>
    public float* B(long floats) => _b.Ensure(floats);
    /// <summary>B packed for every k block of a column panel, shared by the threads of one GEMM
    /// (owned by the thread that called it, which waits for them).</summary>
    public float* SharedPanel(long floats) => _panel.Ensure(floats);
    /// <summary>f16/bf16 conversion runs, and the row accumulator of the small-problem path.</summary>
    public float* Scratch(long floats) => _scratch.Ensure(floats);
    /// <summary>One micro-tile, for partial tiles at the edges of C.</summary>
    public float* Tile(long floats) => _tile.Ensure(floats);

    ~GemmWorkspace()
    {
        _a.Free(); _b.Free(); _panel.Free(); _scratch.Free(); _tile.Free();
    }

    private struct Buffer
    {
        private float* _pointer;
        private long _floats;

        public float* Ensure(long floats)
        {
            if (floats <= _floats) return _pointer;
            Free();
            // A cache line of slack: vector copies of a sliver's last row may touch it.
            _pointer = (float*)NativeMemory.AlignedAlloc((nuint)((floats + 16) * sizeof(float)), 64);
            if (_pointer == null) throw new OutOfMemoryException($"Gemm: could not allocate a packing buffer of {floats} floats");
            _floats = floats;
            return _pointer;
        }

        public void Free()
        {
            if (_pointer != null) NativeMemory.AlignedFree(_pointer);
            _pointer = null;
            _floats = 0;
        }
    }
}
