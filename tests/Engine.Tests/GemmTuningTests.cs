using FastWeights.Engine.Vulkan;

namespace FastWeights.Engine.Tests;

/// <summary>The cooperative-matrix-2 tuner's choice from measured times (no device needed): the
/// preferred tile (the first candidate) stays unless another beats it by more than the margin.</summary>
[TestClass]
public sealed class GemmTuningTests
{
    private static readonly string[] Candidates = ["128x128x64", "128x128x32", "128x256x64"];

    [TestMethod]
    public void PreferredTileStaysWithinTheMargin()
    {
        // 3% faster is within the 5% margin: timing noise, not a better tile.
        var times = new Dictionary<string, double> { ["128x128x64"] = 100_000, ["128x128x32"] = 97_000, ["128x256x64"] = 110_000 };
        Assert.AreEqual("128x128x64", VulkanBackend.PickTunedTile(Candidates, times));
    }

    [TestMethod]
    public void ClearlyFasterTileWins()
    {
        var times = new Dictionary<string, double> { ["128x128x64"] = 100_000, ["128x128x32"] = 97_000, ["128x256x64"] = 80_000 };
        Assert.AreEqual("128x256x64", VulkanBackend.PickTunedTile(Candidates, times));
        times["128x128x32"] = 90_000;
        times["128x256x64"] = 120_000;
        Assert.AreEqual("128x128x32", VulkanBackend.PickTunedTile(Candidates, times));
    }

    [TestMethod]
    public void PreferredTileIsTheFirstListed()
    {
        // The tuner's default, and the tile used while nothing has been tuned, is the list's first.
        Assert.AreEqual("128x128x64", VulkanBackend.CoopMat2Tiles[0]);
        var times = new Dictionary<string, double> { ["128x128x64"] = 100_000, ["128x128x32"] = 100_000, ["128x256x64"] = 100_000 };
        Assert.AreEqual("128x128x64", VulkanBackend.PickTunedTile(Candidates, times));
    }
}
