// How the workgroups of the persistent per-step recurrent kernels (rnn_forward_step.comp,
// rnn_backward_step.comp with PERSISTENT = 1: all steps in one dispatch) hand each step's vector to
// the next step's workgroups without a barrier between them: through an exchange ring [2][..] of
// (value bits, tag) pairs, each written by one 8-byte store, where the tag says which step wrote the
// value (tag = step + 1; the host zeroes the ring, so no step's tag is there before it is written).
// A reader of step t's vector polls its pairs until every tag is t + 1, so the data is its own
// ready flag: no memory barrier, counter or second round trip per step. Two slots suffice: a value
// of step t is overwritten at step t + 2, which its writer reaches only after every workgroup of
// its group has written step t + 1, i.e. has finished reading step t.
// Vulkan does not promise that the workgroups of a dispatch run side by side; where they do not, a
// poll would wait for ever. So a reader gives up after SPIN_LIMIT polls and sets the fault word
// (fault.word, which the host keeps until it has read it: VulkanBackend.CheckExchangeFault then throws,
// naming the op); every later wait stops after at most 256 polls once it is set, so the dispatch
// ends. The host takes this path only where it knows all workgroups fit at once
// (VulkanBackend.Rnn.cs). The ring and the fault word go through `coherent` references, so polls
// read past any non-coherent cache.

layout(buffer_reference, std430, buffer_reference_align = 8) coherent buffer ExchangeBuffer { uvec2 v[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) coherent buffer Exchange4Buffer { uvec4 v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer FaultBuffer { uint word; };

#define SPIN_LIMIT (1u << 21)

void publish(ExchangeBuffer ring, uint at, float value, uint tag) { ring.v[at] = uvec2(floatBitsToUint(value), tag); }

// The value at `at` if its tag is `tag` (else false, value undefined).
bool tryTake(ExchangeBuffer ring, uint at, uint tag, out float value)
{
    uvec2 pair = ring.v[at];
    value = uintBitsToFloat(pair.x);
    return pair.y == tag;
}

// Four values from `at` (a multiple of 4, the ring 32-byte aligned) in two 16-byte loads.
bool tryTake4(ExchangeBuffer ring, uint at, uint tag, out vec4 value)
{
    Exchange4Buffer pairs = Exchange4Buffer(uint64_t(ring));
    uvec4 p = pairs.v[at / 2], q = pairs.v[at / 2 + 1];
    value = vec4(uintBitsToFloat(p.x), uintBitsToFloat(p.z), uintBitsToFloat(q.x), uintBitsToFloat(q.z));
    return p.y == tag && p.w == tag && q.y == tag && q.w == tag;
}

// Whether a reader that has polled `polls` times should stop waiting (raising the fault at the limit).
bool giveUp(FaultBuffer fault, uint polls)
{
    if (polls % 256u == 0u && fault.word != 0u) return true;
    if (polls < SPIN_LIMIT) return false;
    atomicOr(fault.word, 1u);
    return true;
}
