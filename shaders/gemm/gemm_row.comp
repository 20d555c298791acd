#version 460
// GEMM with one output row (M = 1, f32, op(B) = B stored [K, N]): c[b] = alpha a[b] B[b] + beta c[b]
// for a of K values, as in a bias gradient (ones^T dY over the tokens). The portable tiled kernel
// would compute a 128-row tile for the one row; here the work is a read of B once, spread over the
// device by splitting K:
//   PARTIALS = 1: workgroup (x: 64 columns, y: split s, z: batch b) sums
//     partial[b][s][col] = sum_{k in part s} a[b][k] B[b][k][col],  parts of pc.part values of k,
//     invocation (col = id % 64, lane = id / 64) taking every 4th k of the part, so each k's 64
//     columns are one coalesced 256-byte read; the 4 lanes are added in shared memory.
//   PARTIALS = 0: c[b][col] = alpha sum_s partial[b][s][col] + beta c[b][col] (one invocation per column).
// The host (VulkanBackend.GemmRow) picks the split so that the first pass fills the device.
//! variant gemm_row
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "buffers.glsl"

layout(local_size_x = 256) in;
layout(constant_id = 0) const uint PARTIALS = 1;

layout(push_constant) uniform Push
{
    F32Buffer a;            // [batch][K] (stride batchStrideA; 0: shared)
    F32Buffer b;            // [batch][K, N] (stride batchStrideB; 0: shared)
    F32Buffer partial;      // [batch][splits][N]
    F32Buffer c;            // [batch][N]
    uint n;
    uint k;
    uint part;              // values of k per split
    uint splits;
    uint batchStrideA;
    uint batchStrideB;
    float alpha;
    float beta;
} pc;

shared float laneSums[4][64];

void main()
{
    uint id = gl_LocalInvocationID.x, batch = gl_WorkGroupID.z;
    if (PARTIALS == 0)
    {
        uint col = gl_WorkGroupID.x * 256 + id;
        if (col >= pc.n) return;
        float sum = 0.0;
        for (uint s = 0; s < pc.splits; s++) sum += pc.partial.v[(batch * pc.splits + s) * pc.n + col];
        uint at = batch * pc.n + col;
        pc.c.v[at] = pc.beta == 0.0 ? pc.alpha * sum : pc.alpha * sum + pc.beta * pc.c.v[at];
        return;
    }
    uint col = gl_WorkGroupID.x * 64 + id % 64, lane = id / 64, split = gl_WorkGroupID.y;
    uint k0 = split * pc.part, k1 = min(k0 + pc.part, pc.k);
    uint baseA = batch * pc.batchStrideA, baseB = batch * pc.batchStrideB;
    float sum = 0.0;
    if (col < pc.n)
    {
        // four independent products in flight per invocation
        float s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
        uint kk = k0 + lane;
        for (; kk + 12 < k1; kk += 16)
        {
            s0 = fma(pc.a.v[baseA + kk], pc.b.v[baseB + kk * pc.n + col], s0);
            s1 = fma(pc.a.v[baseA + kk + 4], pc.b.v[baseB + (kk + 4) * pc.n + col], s1);
            s2 = fma(pc.a.v[baseA + kk + 8], pc.b.v[baseB + (kk + 8) * pc.n + col], s2);
            s3 = fma(pc.a.v[baseA + kk + 12], pc.b.v[baseB + (kk + 12) * pc.n + col], s3);
        }
        for (; kk < k1; kk += 4) s0 = fma(pc.a.v[baseA + kk], pc.b.v[baseB + kk * pc.n + col], s0);
        sum = (s0 + s1) + (s2 + s3);
    }
    laneSums[lane][id % 64] = sum;
    barrier();
    if (lane == 0 && col < pc.n)
        pc.partial.v[(batch * pc.splits + split) * pc.n + col] = (laneSums[0][id] + laneSums[1][id]) + (laneSums[2][id] + laneSums[3][id]);
}
