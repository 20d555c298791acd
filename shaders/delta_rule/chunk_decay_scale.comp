#version 460
// Gated chunked delta rule: the decayed keys and queries that let the ungated state passes on
// accumulator fragments (chunk_state_fragments.comp, chunk_state_backward_fragments.comp, GATED builds)
// run the gated recurrence. With the chunk's decays of chunk_decay.glsl, for row i of each chunk:
//   keysToEnd_i    = tail_i k_i       (so (diag(tail) U')^T K = U'^T keysToEnd, and diag(tail) K dS^T = keysToEnd dS^T)
//   queriesFrom_i  = gamma_i q_i      (so dO^T diag(gamma) Q' = scale dO^T queriesFrom)
//   chunkDecays[bh, n] = gamma_C      (the state's decay over chunk n)
// q, k bf16 [B, T, H, Dk] in; keysToEnd, queriesFrom bf16 [B, T, H, Dk] out (rounded to nearest;
// queriesFrom only where its address is not 0: the forward state pass reads no queries);
// chunkDecays f32 [B H, chunks]. One workgroup of 64 per (chunk, b H + h).
#extension GL_GOOGLE_include_directive : require
#include "buffers.glsl"
#include "dtype.glsl"

#define CHUNK 64
layout(local_size_x = CHUNK) in;

layout(push_constant) uniform Push
{
    uint64_t q;
    uint64_t k;
    uint64_t alpha;
    uint64_t keysToEnd;     // out
    uint64_t queriesFrom;   // out; 0: not written
    uint64_t chunkDecays;   // out
    uint t;
    uint heads;
    uint dk;
} pc;

#include "chunk_decay.glsl"

void main()
{
    uint n = gl_WorkGroupID.x, bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads, id = gl_LocalInvocationID.x;
    uint t0 = n * CHUNK, rows = min(uint(CHUNK), pc.t - t0);
    loadLogDecays(pc.alpha, (b * pc.t + t0) * pc.heads + h, pc.heads, rows);
    if (id == 0) F32Buffer(pc.chunkDecays).v[bh * gl_NumWorkGroups.x + n] = chunkDecay();
    // consecutive invocations take consecutive elements of the chunk's rows
    for (uint e = id; e < rows * pc.dk; e += CHUNK)
    {
        uint i = e / pc.dk, at = ((b * pc.t + t0 + i) * pc.heads + h) * pc.dk + e % pc.dk;
        U16Buffer(pc.keysToEnd).v[at] = uint16_t(floatToBf16(decayToEnd(i) * bf16ToFloat(uint(U16Buffer(pc.k).v[at]))));
        if (pc.queriesFrom != 0ul)
            U16Buffer(pc.queriesFrom).v[at] = uint16_t(floatToBf16(decayTo(i) * bf16ToFloat(uint(U16Buffer(pc.q).v[at]))));
    }
}
