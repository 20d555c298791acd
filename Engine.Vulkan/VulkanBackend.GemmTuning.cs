using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// Tile choice of the cooperative-matrix-2 GEMM. The driver compiles each (tile, M, N, K) pipeline
// its own way and the speed of a tile varies by more than 2x between shapes on the same device
// (bench/results/2026-12-01-h200-run8.txt), so with CoopMat2Tile = "auto" the first call of each
// shape times every tile that divides it, on the real operands into a scratch C, in two passes, and
// keeps the fastest unless the preferred tile (the first in CoopMat2Tiles) is within TuningMargin of it.
// Later calls of that shape use the cached choice; nothing is timed inside a measurement.
public sealed partial class VulkanBackend
{
    private readonly record struct GemmShapeKey(DType DType, int Batch, int M, int N, int K, bool TransposeA, bool TransposeB);

    private readonly Dictionary<GemmShapeKey, string> _tunedTiles = [];
    private string? _trialTile;

    /// <summary>Shapes the tuner times tiles for, at most: each costs two passes over the candidate
    /// tiles (eight runs of each) on its first call, so beyond these a new shape takes the preferred
    /// tile untimed (ever new shapes would otherwise be tuned call after call).</summary>
    public int MaxTunedGemmShapes { get; set; } = 64;

    /// <summary>Timed runs of each candidate tile when tuning a shape (after one untimed run).</summary>
    private const int TuningRuns = 3;

    /// <summary>How much faster than the preferred tile another must time to be chosen instead, so that
    /// timing noise does not move a shape off the tile that measured best at length. At f16 8192^3 on
    /// the H100 the tuner once chose 128x128x32 (then first in the list) over 128x128x64, which then
    /// ran at 289 TFLOP/s against 331 (run 132).</summary>
    internal const double TuningMargin = 0.05;

    /// <summary>The tile dimensions of a name such as "128x256x32".</summary>
    private static int[] TileDims(string tile) => tile.Split('x').Select(int.Parse).ToArray();

    private static bool Divides(string tile, int m, int n, int k)
    {
        var d = TileDims(tile);
        return m % d[0] == 0 && n % d[1] == 0 && k % d[2] == 0;
    }

    /// <summary>The tile a problem runs with: a trial tile while tuning, the fixed CoopMat2Tile, or the
    /// tuned (or, during a measurement, the default) tile of its shape.</summary>
    private string CoopMat2TileFor(in GemmProblem p)
    {
        if (_trialTile is not null) return _trialTile;
        if (CoopMat2Tile != "auto") return CoopMat2Tile;
        if (CoopMat2Staged) return CoopMat2Tiles[0];   // the staged kernel takes whole tiles whatever the tile; nothing to tune
        var key = new GemmShapeKey(p.A.DType, p.Batch, p.M, p.N, p.K, p.TransposeA, p.TransposeB);
        if (_tunedTiles.TryGetValue(key, out var tuned)) return tuned;
        int m = p.M, n = p.N, k = p.K;
        var candidates = CoopMat2Tiles.Where(t => Divides(t, m, n, k)).ToList();
        if (candidates.Count <= 1 || Stream.Measuring || _tunedTiles.Count >= MaxTunedGemmShapes) return candidates.FirstOrDefault() ?? CoopMat2Tiles[0];
        tuned = Tune(p, candidates);
        _tunedTiles[key] = tuned;
        return tuned;
    }

    /// <summary>The same for a shape without operands (benchmark labels): tuned, or the default.</summary>
    private string CoopMat2TileFor(DType dtype, int m, int n, int k, bool transposeA, bool transposeB)
    {
        if (CoopMat2Tile != "auto") return CoopMat2Tile;
        return _tunedTiles.TryGetValue(new GemmShapeKey(dtype, 1, m, n, k, transposeA, transposeB), out var tuned) ? tuned
            : CoopMat2Tiles.FirstOrDefault(t => Divides(t, m, n, k)) ?? CoopMat2Tiles[0];
    }

    // Two passes over the candidates, the second in reverse order, adding each tile's two times: the
    // GPU's clock drifts while tuning (rising from idle: the H200 takes a few hundred ms,
    // bench/results/2026-12-01-h200-run15-smi.csv; or falling under the sustained load of large
    // shapes), and a tile's slots i and 2n - 1 - i of the 2n sum to the same under any linear drift.
    // Keeping each tile's faster time instead (before 2026-12-08) favoured the first tile under a drift
    // either way: it ran first in a falling clock and last in a rising one.
    private string Tune(GemmProblem p, List<string> candidates)
    {
        using var scratch = Tensor.Empty(this, p.C.Shape);
        var trial = p with { C = scratch, Beta = 0f };
        var total = candidates.ToDictionary(tile => tile, _ => 0.0);
        try
        {
            foreach (string tile in candidates.Concat(Enumerable.Reverse(candidates)))
            {
                _trialTile = tile;
                Gemm(trial);   // pipeline creation and first touch stay out of the timing
                total[tile] += Stream.MeasureGpuNanoseconds(() => { for (int i = 0; i < TuningRuns; i++) Gemm(trial); });
            }
        }
        finally { _trialTile = null; }
        return PickTunedTile(candidates, total);
    }

    /// <summary>The tuned tile among candidates (the preferred one first) from each one's measured time:
    /// the fastest, if it beats the preferred tile by more than TuningMargin, else the preferred.</summary>
    internal static string PickTunedTile(IReadOnlyList<string> candidates, IReadOnlyDictionary<string, double> nanoseconds)
    {
        string preferred = candidates[0];
        string fastest = candidates.MinBy(tile => nanoseconds[tile])!;
        return nanoseconds[fastest] < (1 - TuningMargin) * nanoseconds[preferred] ? fastest : preferred;
    }
}
