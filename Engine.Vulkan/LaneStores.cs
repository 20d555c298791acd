namespace FastWeights.Engine.Vulkan;

/// <summary>Which result tiles of the delta rule's stages on accumulator fragments are written through the
/// subgroup's scratch tile as 16-byte words, each lane 8 consecutive values of one row, instead of with
/// coopMatStore of the fragment (<see cref="VulkanBackend.DeltaRuleLaneStores"/>; specialisation constant 9,
/// LANE_STORES in shaders/delta_rule/chunk_fragments.glsl). The values written are the same either way.</summary>
[Flags]
public enum LaneStores
{
    /// <summary>Every tile through coopMatStore.</summary>
    None = 0,
    /// <summary>bf16 tiles (rounded to nearest): the output stage's O, the q, k gradients' dq and dW and stage 1's W.</summary>
    Half = 1,
    /// <summary>f32 tiles: the values gradient's dU'_local, the q, k gradients' partial dk, an f32 O.</summary>
    Float = 2,
    /// <summary>The state passes' compact S, U', dS_C and dU', written from the copies they stage in shared
    /// memory for their products (COPY_STAGED_ROWS, shaders/delta_rule/state_fragments.glsl); compact
    /// intermediates only (with f32 intermediates the host leaves this bit out). On by default with Half.</summary>
    StagedState = 4,
}
