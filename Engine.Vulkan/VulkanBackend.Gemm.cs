using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// shaders/gemm/: gemm_tiled.comp, the portable kernel (any device, f32/f16/bf16 inputs);
// gemm_coopmat.comp and gemm_coopmat_direct.comp, the VK_KHR_cooperative_matrix kernels chosen when
// the device lists the 16x16x16 shape; gemm_coopmat2.comp, the VK_NV_cooperative_matrix2 kernel
// (workgroup-scope matrices) preferred where the device offers that extension.
public sealed partial class VulkanBackend : IGemmOps
{
    public void Gemm(in GemmProblem p)
    {
        if (p.M == 0 || p.N == 0 || p.Batch == 0) return;
        if (p.Batch > 65535) throw new OpArgumentException("Gemm", "c", $"{p.C.Shape} has {p.Batch} batches; the Vulkan backend takes at most 65535 per call");
        if (UsesRowKernel(p)) { GemmRow(p); return; }
        bool coopmat = UsesCooperativeMatrix(p);
        if (!coopmat && SplitsOverK(p) is var splits and > 1) { GemmSplitOverK(p, splits); return; }
        bool storesC = coopmat && StoresCAsMatrices(p.C.ByteOffset, p.Batch, p.M, p.N);
        ComputeKernel kernel;
        uint tile, tileN = 0;
        if (storesC && CoopMat2Kernel(p.A.DType, p.M, p.N, p.K, CoopMat2TileFor(p)) is { } cm2)
        {
            kernel = Kernels.Get(cm2.Variant, SpecialisesShape(cm2.Variant, p)
                ? [cm2.Invocations, p.TransposeA ? 1 : 0, p.TransposeB ? 1 : 0, p.M, p.N, p.K, CoopMat2GroupRows]
                : [cm2.Invocations, p.TransposeA ? 1 : 0, p.TransposeB ? 1 : 0, 0, 0, 0, CoopMat2GroupRows], fullSubgroups: true);
            tile = (uint)cm2.TileM;
            tileN = (uint)cm2.TileN;
        }
        else if (storesC && TilesExactly(p))
        {
            string variant = DirectVariant(p.A.DType);
            kernel = Kernels.Get(variant,
                SpecialisesShape(variant, p)
                    ? [4 * Capabilities.SubgroupSize, p.TransposeA ? 1 : 0, p.TransposeB ? 1 : 0, p.M, p.N, p.K]
                    : [4 * Capabilities.SubgroupSize, p.TransposeA ? 1 : 0, p.TransposeB ? 1 : 0], fullSubgroups: true);
            tile = 128;
        }
        else if (coopmat)
        {
            int subgroup = Capabilities.SubgroupSize;
            int warps = CoopMatSubgroups;
            kernel = Kernels.Get($"gemm/gemm_coopmat_{(p.A.DType == DType.BF16 ? "bf16" : "f16")}_w{warps}",
                [warps * subgroup, p.TransposeA ? 1 : 0, p.TransposeB ? 1 : 0], requiredSubgroupSize: 0, fullSubgroups: true);
            tile = 128;
        }
        else
        {
            kernel = Kernels.Get(p.A.DType switch
            {
                DType.F16 => "gemm/gemm_tiled_f16",
                DType.BF16 => "gemm/gemm_tiled_bf16",
                _ => "gemm/gemm_tiled_f32",
            }, [Vectorisable(p.A, p.LeadingA, p.BatchStrideA) ? 1 : 0, Vectorisable(p.B, p.LeadingB, p.BatchStrideB) ? 1 : 0]);
            tile = 128;
        }
        var push = new PushConstants(stackalloc byte[96]);
        push.Address(p.A);
        push.Address(p.B);
        push.Address(p.C);
        push.Append(p.M);
        push.Append(p.N);
        push.Append(p.K);
        push.Append(p.TransposeA ? 1 : 0);
        push.Append(p.TransposeB ? 1 : 0);
        push.Append(checked((uint)p.BatchStrideA));
        push.Append(checked((uint)p.BatchStrideB));
        push.Append(p.Alpha);
        push.Append(p.Beta);
        Dispatch(kernel, push, Groups(p.N, (int)(tileN == 0 ? tile : tileN)), Groups(p.M, (int)tile), (uint)p.Batch);
    }

    /// <summary>Parts S of K for a portable-kernel GEMM whose output has few 128 x 128 tiles and whose
    /// reduction is long, which would leave most of a large GPU idle (the recurrent cells' dR: LSTM 768,
    /// one head, is 24 x 6 tiles over 16384 tokens, four heads of 192 are 48 tiles): about 512 tiles in
    /// all, at most 16 parts of at least 512 each, S dividing K. Only for op(A) = A^T and B untransposed
    /// with their own matrix per batch entry, where a part of K is a contiguous block of both stored
    /// operands; otherwise 1.</summary>
    private static int SplitsOverK(in GemmProblem p)
    {
        if (!p.TransposeA || p.TransposeB) return 1;
        if (p.Batch > 1 && (p.BatchStrideA != (long)p.K * p.M || p.BatchStrideB != (long)p.K * p.N)) return 1;
        long tiles = (long)p.Batch * ((p.M + 127) / 128) * ((p.N + 127) / 128);
        int want = (int)Math.Clamp(512 / tiles, 1, 16);
        for (int s = want; s > 1; s--)
            if (p.K % s == 0 && p.K / s >= 512) return s;
        return 1;
    }

    /// <summary>C = alpha sum_s A_s^T B_s + beta C over the S contiguous parts of K: the S partial products
    /// in one batched GEMM (batch entries Batch x S), then C = alpha ones[1, S] x partials + beta C.</summary>
    private void GemmSplitOverK(in GemmProblem p, int splits)
    {
        int part = p.K / splits;
        using var aParts = p.A.Reshape(new Shape(p.Batch * splits, part, p.M));
        using var bParts = p.B.Reshape(new Shape(p.Batch * splits, part, p.N));
        using var partials = Tensor.Empty(this, new Shape(p.Batch * splits, p.M, p.N));
        Gemm(new GemmProblem(aParts, bParts, partials, true, false, 1f, 0f, p.Batch * splits, p.M, p.N, part, (long)part * p.M, (long)part * p.N));
        using var ones = Tensor.Full(this, new Shape(1, splits), 1f);
        using var partialRows = partials.Reshape(new Shape(p.Batch, splits, p.M * p.N));
        using var cRows = p.C.Reshape(new Shape(p.Batch, 1, p.M * p.N));
        Gemm(new GemmProblem(ones, partialRows, cRows, false, false, p.Alpha, p.Beta, p.Batch, 1, p.M * p.N, splits, 0, (long)splits * p.M * p.N));
    }

    /// <summary>Whether the shared-memory-free KHR kernel double-buffers its fragments in registers
    /// (FASTWEIGHTS_GEMM_DIRECT=plain turns it off for experiments).</summary>
    public bool CoopMatDirectPipelined { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_GEMM_DIRECT") != "plain";

    /// <summary>Tile (BM x BN x BK) of the VK_NV_cooperative_matrix2 GEMM for problems that tile
    /// exactly, or "auto" (the default): the fastest tile for each shape, timed on its first call
    /// (VulkanBackend.GemmTuning.cs). Others use 128x128x32 with clamped loads.
    /// FASTWEIGHTS_GEMM_CM2_TILE fixes one for experiments (the bench sweeps it).</summary>
    public string CoopMat2Tile { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_GEMM_CM2_TILE") ?? "auto";

    /// <summary>Tiles gemm_coopmat2.comp is compiled for, in order of preference: the first that divides
    /// a shape is its tile while nothing has been tuned, and the tuner keeps it unless another is
    /// clearly faster (<see cref="PickTunedTile"/>). 128x128x64 first: on 128 invocations it was the
    /// fastest tile at 4096^3 and 8192^3 on the H100 (runs 130-132, 323-339 TFLOP/s).</summary>
    public static readonly string[] CoopMat2Tiles = ["128x128x64", "128x128x32", "128x256x64", "128x256x32", "256x128x32", "128x256x16",
        "128x128x16"];
    // 128x128x128 (BK 128 on 128 invocations, 64 KiB of blocks a step) ran at 67 TFLOP/s on the H100
    // (run 132) and was dropped.

    /// <summary>Tile rows that consecutive workgroups of the cooperative-matrix-2 GEMM walk together
    /// (grouped rasterisation for L2 reuse; 0 or 1: one whole tile row after another). 8 took the
    /// 128x256x64 tile from 281 / 297 to 286 / 307 TFLOP/s at bf16 4096^3 / 8192^3 on the H200
    /// (bench/results/2026-12-01-h200-run25.txt). FASTWEIGHTS_GEMM_CM2_GROUP sets it for experiments.</summary>
    public int CoopMat2GroupRows { get; set; } = int.TryParse(Environment.GetEnvironmentVariable("FASTWEIGHTS_GEMM_CM2_GROUP"), out int g) ? g : 8;

    /// <summary>Workgroup size the cooperative-matrix-2 GEMM tries first (null: the order of
    /// <see cref="CoopMat2Kernel"/>). FASTWEIGHTS_GEMM_CM2_INVOCATIONS sets it for experiments; a size
    /// the device does not list for the tile falls back to that order.</summary>
    public int? CoopMat2Invocations { get; set; } = int.TryParse(Environment.GetEnvironmentVariable("FASTWEIGHTS_GEMM_CM2_INVOCATIONS"), out int w) ? w : null;

    /// <summary>Whether problems of whole 128 x 128 x 32 tiles run the cooperative-matrix-2 kernel that
    /// stages its operands itself (gemm_coopmat2_staged.comp: double-buffered shared memory, the next
    /// K step read into registers during the multiply) instead of the tile chosen for them. An
    /// experiment, off by default until it has been measured against the driver-staged tiles;
    /// FASTWEIGHTS_GEMM_CM2_STAGED=1 turns it on, =tensor with <see cref="CoopMat2StagedTensorLoads"/>.</summary>
    public bool CoopMat2Staged { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_GEMM_CM2_STAGED") is "1" or "tensor";

    /// <summary>Whether the self-staged kernel reads its staged blocks through tensor layouts over
    /// shared memory (coopMatLoadTensorNV) rather than coopMatLoad.</summary>
    public bool CoopMat2StagedTensorLoads { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_GEMM_CM2_STAGED") == "tensor";

    /// <summary>Shared memory of gemm_coopmat2_staged.comp: two buffers for each operand of 640 16-byte
    /// words (gemm_staging.glsl's SHARED_VECS).</summary>
    private const int StagedSharedBytes = 2 * 2 * 640 * 16;

    private readonly record struct CoopMat2Choice(string Variant, int TileM, int TileN, int Invocations);

    /// <summary>The cooperative-matrix-2 kernel for a problem, or null when the device lacks the
    /// extension or lists no workgroup-scope shape for the tile (the KHR kernels run instead).
    /// Workgroup sizes are tried in order: the experiment's (CoopMat2Invocations) if set, then the one
    /// that leaves each invocation 128 accumulator floats (BM BN / 128: 128 invocations for 128x128,
    /// 256 for 128x256), then 256, 128, 512. On the H100 (bench/results/2026-12-08-h100-run130.txt,
    /// run131, run132) 128x128x64 ran at 323-325 / 328-339 TFLOP/s (bf16 4096^3 / 8192^3) on 128
    /// invocations against 252 / 273 on 256, and 128x128x32 at 272 / 295 against 176 / 187, while
    /// 128x256x64 on 128 (256 accumulators an invocation) fell to 28 / 27 and stays on 256
    /// (282 / 307-315).</summary>
    private CoopMat2Choice? CoopMat2Kernel(DType inputType, int m, int n, int k, string tile)
    {
        if (!Device.UseCooperativeMatrix2) return null;
        var input = inputType == DType.BF16 ? ComponentType.BFloat16 : ComponentType.Float16;
        string dtype = inputType == DType.BF16 ? "bf16" : "f16";
        if (!CoopMat2Tiles.Contains(tile)) throw new ArgumentException($"CoopMat2Tile '{tile}' is none of auto, {string.Join(", ", CoopMat2Tiles)}");
        var dims = TileDims(tile);
        bool exact = m % dims[0] == 0 && n % dims[1] == 0 && k % dims[2] == 0;
        string variant = exact ? $"gemm/gemm_cm2_{dtype}_{tile}" : $"gemm/gemm_cm2_{dtype}_128x128x32_clamp";
        if (!exact) dims = [128, 128, 32];
        if (CoopMat2Staged && m % 128 == 0 && n % 128 == 0 && k % 32 == 0
            && StagedSharedBytes + Capabilities.CooperativeMatrix2!.ReservedSharedMemory <= Capabilities.MaxSharedMemoryBytes)
        {
            variant = $"gemm/gemm_cm2_staged_{(CoopMat2StagedTensorLoads ? "tensor_" : "")}{dtype}_128x128x32";
            dims = [128, 128, 32];
        }
        Span<int> order = [CoopMat2Invocations ?? 0, dims[0] * dims[1] / 128, 256, 128, 512];
        for (int i = 0; i < order.Length; i++)
        {
            int invocations = order[i];
            if (invocations > 0 && !order[..i].Contains(invocations) && invocations <= Capabilities.MaxWorkgroupInvocations
                && Capabilities.HasFlexibleMatrix(dims[0], dims[1], dims[2], input, invocations))
                return new CoopMat2Choice(variant, dims[0], dims[1], invocations);
        }
        return null;
    }

    /// <summary>Subgroups per workgroup of the cooperative-matrix GEMM (4 or 8; FASTWEIGHTS_GEMM_SUBGROUPS
    /// overrides the default for experiments).</summary>
    public int CoopMatSubgroups { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_GEMM_SUBGROUPS") == "4" ? 4 : 8;

    // f32 rows of a multiple of 4 elements starting 16-byte aligned load as vec4s in gemm_tiled.
    private static bool Vectorisable(Tensor t, int leading, long batchStride) =>
        t.DType == DType.F32 && leading % 4 == 0 && batchStride % 4 == 0 && t.ByteOffset % 16 == 0;

    /// <summary>The cooperative-matrix kernel runs when the device lists a 16x16x16 subgroup shape for
    /// the input type with f32 accumulation, the subgroup size divides its 512 vector loads, and the
    /// stored contiguous axes are multiples of 8 elements starting 16-byte aligned.</summary>
    private bool UsesCooperativeMatrix(in GemmProblem p)
    {
        if (!Device.UseCooperativeMatrix || p.A.DType == DType.F32) return false;
        var input = p.A.DType == DType.BF16 ? ComponentType.BFloat16 : ComponentType.Float16;
        if (!Capabilities.HasCooperativeMatrix(16, 16, 16, input)) return false;
        if (p.A.DType == DType.BF16 && !Capabilities.BFloat16CooperativeMatrix) return false;
        if (!Capabilities.ShaderFloat16) return false;
        int invocations = CoopMatSubgroups * Capabilities.SubgroupSize;
        if (invocations > Capabilities.MaxWorkgroupInvocations || 512 % invocations != 0) return false;
        return p.LeadingA % 8 == 0 && p.LeadingB % 8 == 0 && p.A.ByteOffset % 16 == 0 && p.B.ByteOffset % 16 == 0
            && p.BatchStrideA % 8 == 0 && p.BatchStrideB % 8 == 0;
    }

    /// <summary>Whether C may be loaded and stored as cooperative matrices (the direct and
    /// cooperative-matrix-2 kernels): each batch entry's first element must be 16-byte aligned (Vulkan's
    /// rule for cooperative-matrix loads and stores, and GL_NV_cooperative_matrix2's for a tensor's base),
    /// so C must start at a multiple of 16 bytes and, batched, hold a multiple of 4 floats an entry.
    /// Otherwise the shared-memory KHR kernel runs, which writes C element by element.</summary>
    private static bool StoresCAsMatrices(long cByteOffset, int batch, int m, int n) =>
        cByteOffset % 16 == 0 && (batch == 1 || (long)m * n % 4 == 0);

    // gemm_coopmat_direct's variant for an input type, register-pipelined or not.
    private string DirectVariant(DType dtype) =>
        $"gemm/gemm_coopmat_direct_{(CoopMatDirectPipelined ? "pipelined_" : "")}{(dtype == DType.BF16 ? "bf16" : "f16")}";

    // gemm_coopmat_direct (no shared memory) needs whole 128 x 128 blocks of C and K in steps of 16.
    private static bool TilesExactly(in GemmProblem p) => p.M % 128 == 0 && p.N % 128 == 0 && p.K % 16 == 0;

    /// <summary>Which GEMM kernel a problem of this dtype and size would use (for benchmarks), with C
    /// contiguous from a 16-byte boundary.</summary>
    public string GemmKernelFor(DType dtype, int m, int n, int k, bool transposeA = false, bool transposeB = false, int batch = 1)
    {
        if (dtype == DType.F32 && m == 1 && !transposeB) return "row";
        if (dtype == DType.F32 || !Device.UseCooperativeMatrix) return "tiled";
        var input = dtype == DType.BF16 ? ComponentType.BFloat16 : ComponentType.Float16;
        bool listed = Capabilities.HasCooperativeMatrix(16, 16, 16, input) && (dtype != DType.BF16 || Capabilities.BFloat16CooperativeMatrix)
            && Capabilities.ShaderFloat16 && 512 % (CoopMatSubgroups * Capabilities.SubgroupSize) == 0
            && CoopMatSubgroups * Capabilities.SubgroupSize <= Capabilities.MaxWorkgroupInvocations;
        if (!listed || (transposeA ? m : k) % 8 != 0 || (transposeB ? k : n) % 8 != 0) return "tiled";
        if (!StoresCAsMatrices(0, batch, m, n)) return "coopmat";
        var shape = new GemmShape(m, n, k, transposeA, transposeB);
        if (CoopMat2Kernel(dtype, m, n, k, CoopMat2TileFor(dtype, m, n, k, transposeA, transposeB)) is { } cm2)
            return "coopmat2 " + cm2.Variant["gemm/gemm_cm2_".Length..] + $" x{cm2.Invocations}" + (WouldSpecialise(cm2.Variant, shape) ? " specialised" : "");
        if (m % 128 != 0 || n % 128 != 0 || k % 16 != 0) return "coopmat";
        return (CoopMatDirectPipelined ? "coopmat-direct-pipelined" : "coopmat-direct") + (WouldSpecialise(DirectVariant(dtype), shape) ? " specialised" : "");
    }
}
