#version 460
// Gated chunked delta rule: the decayed keys and queries that let the ungated state passes on
// accumulator fragments (chunk_state_fragments.comp, chunk_state_backward_fragments.comp, GATED builds)
// run the gated recurrence. With the chunk's decays of chunk_decay.glsl, for row i of each chunk:
//   keysToEnd_i    = tail_i k_i       (so (diag(tail) U')^T K = U'^T keysToEnd, and diag(tail) K dS^T = keysToEnd dS^T)
//   queriesFrom_i  = gamma_i q_i      (so dO^T diag(gamma) Q' = scale dO^T queriesFrom)
//   chunkDecays[bh, n] = gamma_C      (the state's decay over chunk n)
// q, k bf16 [B, T, H, Dk] in; keysToEnd, queriesFrom bf16 [B, T, H, Dk] out (rounded to nearest;
// queriesFrom only where its address is not 0: the forward state pass reads no queries);
// chunkDecays f32 [B H, chunks]. One workgroup of 256 per (chunk, b H + h); Dk a multiple of 8 (the
// host checks): each invocation reads and writes 8 bf16 of a row at a time (16 bytes), consecutive
// invocations along the row, then on to the next rows. (The first version, 64 invocations each moving
// one bf16 at a time, took 462 us a call on average at B8 H16 T8192 D128 on the H100, forward calls
// with keys and backward calls with keys and queries together: run 108.)
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "buffers.glsl"
#include "dtype.glsl"

#define CHUNK 64
layout(local_size_x = 256) in;

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

// The 8 bf16 packed in w (value 2i in word i's low half), each times `factor`, rounded back to bf16.
uvec4 scaleBf16(uvec4 w, float factor)
{
    uvec4 scaled;
    [[unroll]] for (uint i = 0; i < 4; i++)
        scaled[i] = floatToBf16(factor * bf16ToFloat(w[i] & 0xFFFFu)) | (floatToBf16(factor * uintBitsToFloat(w[i] & 0xFFFF0000u)) << 16);
    return scaled;
}

void main()
{
    uint n = gl_WorkGroupID.x, bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads, id = gl_LocalInvocationID.x;
    uint t0 = n * CHUNK, rows = min(uint(CHUNK), pc.t - t0), pieces = pc.dk / 8;   // uvec4 per row
    loadLogDecays(pc.alpha, (b * pc.t + t0) * pc.heads + h, pc.heads, rows);
    if (id == 0) F32Buffer(pc.chunkDecays).v[bh * gl_NumWorkGroups.x + n] = chunkDecay();
    for (uint e = id; e < rows * pieces; e += 256)
    {
        uint i = e / pieces, at = ((b * pc.t + t0 + i) * pc.heads + h) * pieces + e % pieces;   // in uvec4
        Words4Buffer(pc.keysToEnd).v[at] = scaleBf16(Words4Buffer(pc.k).v[at], decayToEnd(i));
        if (pc.queriesFrom != 0ul)
            Words4Buffer(pc.queriesFrom).v[at] = scaleBf16(Words4Buffer(pc.q).v[at], decayTo(i));
    }
}
