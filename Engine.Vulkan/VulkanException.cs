using Silk.NET.Vulkan;

namespace FastWeights.Engine.Vulkan;

/// <summary>A Vulkan call returned an error. Carries the call's name and its VkResult.</summary>
public sealed class VulkanException : Exception
{
    public VulkanException(string call, Result result, string? detail = null)
        : base($"{call} failed with {result} ({(int)result}){(detail is null ? "" : ": " + detail)}")
    {
        Call = call;
        Result = result;
    }

    public string Call { get; }
    public Result Result { get; }

    /// <summary>Throws unless <paramref name="result"/> is Success (or another non-negative status).</summary>
    public static void Check(Result result, string call)
    {
        if ((int)result < 0) throw new VulkanException(call, result);
    }
}
