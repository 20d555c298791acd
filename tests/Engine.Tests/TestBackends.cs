using FastWeights.Engine.Cpu;
using FastWeights.Engine.Vulkan;

namespace FastWeights.Engine.Tests;

/// <summary>Backends by name for parameterised tests: "cpu" and "vulkan". On CI (CI=true) a missing
/// Vulkan device fails the test; elsewhere it makes the test inconclusive.</summary>
public static class TestBackends
{
    private static readonly Lazy<VulkanBackend?> Vulkan = new(() => VulkanBackend.TryCreate(new VulkanOptions { AllowCpuDevices = true }, out _));

    public static IBackend Get(string name)
    {
        switch (name)
        {
            case "cpu": return CpuBackend.Shared;
            case "vulkan":
                var backend = Vulkan.Value;
                if (backend is not null) return backend;
                VulkanBackend.TryCreate(new VulkanOptions { AllowCpuDevices = true }, out string? why);
                if (Environment.GetEnvironmentVariable("CI") == "true")
                    Assert.Fail($"No Vulkan device on CI: {why}");
                Assert.Inconclusive($"No Vulkan device: {why}");
                return null!;
            default: throw new ArgumentException($"unknown backend {name}");
        }
    }
}
