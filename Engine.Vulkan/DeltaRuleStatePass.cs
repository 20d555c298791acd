namespace FastWeights.Engine.Vulkan;

/// <summary>The kernels of the chunked delta rule's sequential passes (VulkanBackend.DeltaRuleStatePass).</summary>
public enum DeltaRuleStatePass
{
    /// <summary>The backend picks per problem: the accumulator-fragment passes where they apply
    /// (VulkanBackend.DeltaRuleUsesStateFragments), else VulkanBackend.DeltaRuleUsesStateTiles.</summary>
    Auto,
    /// <summary>chunk_sequential.glsl: register-tiled f32 FMA products, slices of 16-64 state rows per workgroup.</summary>
    Sequential,
    /// <summary>chunk_state_tiles.comp / chunk_state_backward_tiles.comp: 64 state rows per workgroup on
    /// chunk_tiles.glsl's products (tensor cores where the parallel stages use them).</summary>
    Tiles,
}
