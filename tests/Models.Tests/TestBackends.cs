using FastWeights.Engine;
using FastWeights.Engine.Cpu;

namespace FastWeights.Models.Tests;

/// <summary>The backends the layer tests run on: "cpu", or "vulkan" (lavapipe allowed). Without a
/// Vulkan device a test is inconclusive, except on CI (CI=true), where that is a failure.</summary>
internal static class TestBackends
{
    private static readonly Lazy<Engine.Vulkan.VulkanBackend?> VulkanBackend = new(() => Engine.Vulkan.VulkanBackend.TryCreate(new() { AllowCpuDevices = true }, out _));

    public static IBackend Get(string name) => name == "cpu" ? CpuBackend.Shared : Vulkan();

    public static IBackend Vulkan()
    {
        var backend = VulkanBackend.Value;
        if (backend is not null) return backend;
        Engine.Vulkan.VulkanBackend.TryCreate(new() { AllowCpuDevices = true }, out string? why);
        if (Environment.GetEnvironmentVariable("CI") == "true") Assert.Fail($"No Vulkan device on CI: {why}");
        Assert.Inconclusive($"No Vulkan device: {why}");
        return null!;
    }
}
