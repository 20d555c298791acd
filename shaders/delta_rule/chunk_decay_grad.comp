#version 460
// Gated chunked delta rule, backward, last stage: dalpha from the gradient of the cumulative log
// decays. chunk_grad_qk (one part per 64 columns of Dk) and chunk_wy_backward (the last part) wrote
// their shares of dg_i, the gradient of g_i = sum_{j <= i} log alpha_j within the chunk
// (chunk_decay.glsl). One workgroup of 64 per (chunk, b H + h):
//   dg_i = sum over parts,   dlog alpha_j = sum_{i >= j} dg_i (rows of the chunk),   dalpha_j = dlog alpha_j / alpha_j
// alpha, dalpha [B, T, H] f32; parts [parts, B, T, H] f32.
#extension GL_GOOGLE_include_directive : require
#include "buffers.glsl"

#define CHUNK 64
layout(local_size_x = CHUNK) in;

layout(push_constant) uniform Push
{
    uint64_t alpha;
    uint64_t decayParts;
    uint64_t dalpha;    // out
    uint t;
    uint heads;
    uint parts;
} pc;

shared float dg[CHUNK];

void main()
{
    uint n = gl_WorkGroupID.x, bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads, id = gl_LocalInvocationID.x;
    uint t0 = n * CHUNK, rows = min(uint(CHUNK), pc.t - t0);
    uint at = (b * pc.t + t0 + id) * pc.heads + h, tokens = pc.t * gl_NumWorkGroups.y;
    float sum = 0.0;
    if (id < rows)
        for (uint p = 0; p < pc.parts; p++) sum += F32Buffer(pc.decayParts).v[p * tokens + at];
    dg[id] = sum;
    barrier();
    if (id < rows)
    {
        float suffix = 0.0;
        for (uint i = id; i < rows; i++) suffix += dg[i];
        F32Buffer(pc.dalpha).v[at] = suffix / F32Buffer(pc.alpha).v[at];
    }
}
