using FastWeights.Engine.Vulkan;

namespace FastWeights.Engine.Tests;

/// <summary>BackendSettings puts back switches of each kind the tests change (bool, validated int,
/// enum), both when the scope ends normally and when it ends by an exception.</summary>
[TestClass]
public sealed class BackendSettingsTests
{
    [TestMethod]
    public void SwitchesComeBackAfterTheScope()
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        bool split = backend.DeltaRuleCoopMatSplit;
        int group = backend.DeltaRuleTileGroup;
        var pass = backend.DeltaRuleStatePass;

        void ChangeAll()
        {
            backend.DeltaRuleCoopMatSplit = !split;
            backend.DeltaRuleTileGroup = group == 128 ? 256 : 128;
            backend.DeltaRuleStatePass = pass == DeltaRuleStatePass.Tiles ? DeltaRuleStatePass.Sequential : DeltaRuleStatePass.Tiles;
        }

        void AssertAsFound(string when)
        {
            Assert.AreEqual(split, backend.DeltaRuleCoopMatSplit, when);
            Assert.AreEqual(group, backend.DeltaRuleTileGroup, when);
            Assert.AreEqual(pass, backend.DeltaRuleStatePass, when);
        }

        using (BackendSettings.Keep(backend))
        {
            ChangeAll();
            Assert.AreNotEqual(split, backend.DeltaRuleCoopMatSplit);
            Assert.AreNotEqual(group, backend.DeltaRuleTileGroup);
            Assert.AreNotEqual(pass, backend.DeltaRuleStatePass);
        }
        AssertAsFound("after the scope");

        Assert.ThrowsExactly<InvalidOperationException>(() =>
        {
            using var settings = BackendSettings.Keep(backend);
            ChangeAll();
            throw new InvalidOperationException("the test failed midway");
        });
        AssertAsFound("after an exception in the scope");
    }
}
