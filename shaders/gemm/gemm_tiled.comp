#version 460
// Portable GEMM for any device: 128 x 128 output tile per workgroup of 256 invocations, K in
// steps of 8 through double-buffered shared memory, an 8 x 8 register block per invocation
// (rows ty*4 + {0..3} and 64 + ty*4 + {0..3}, columns likewise with tx, so the shared-memory
// reads are vec4s without bank conflicts). Inputs f32, f16 or bf16 (IN_DTYPE), converted to f32
// on load; accumulation in f32. Works for any subgroup size; out-of-range elements load as 0.
//! variant gemm_tiled_f32 -DIN_DTYPE=0
//! variant gemm_tiled_f16 -DIN_DTYPE=1
//! variant gemm_tiled_bf16 -DIN_DTYPE=2
#extension GL_GOOGLE_include_directive : require
#include "buffers.glsl"
#include "dtype.glsl"
#include "gemm_common.glsl"

#define BM 128
#define BN 128
#define BK 8
#define LOADS_A (BM * BK / 256)
#define LOADS_B (BN * BK / 256)

layout(local_size_x = 256) in;

shared vec4 tileA[2][BK][BM / 4];
shared vec4 tileB[2][BK][BN / 4];

float loadA(uint base, uint row, uint col)
{
    if (row >= pc.m || col >= pc.k) return 0.0;
    return loadAs(pc.a, IN_DTYPE, base + offsetA(row, col));
}

float loadB(uint base, uint row, uint col)
{
    if (row >= pc.k || col >= pc.n) return 0.0;
    return loadAs(pc.b, IN_DTYPE, base + offsetB(row, col));
}

// Which (m, k) of the A tile element 'e' of this invocation loads: consecutive invocations walk
// the stored contiguous axis so global reads coalesce.
uvec2 slotA(uint e)
{
    uint idx = gl_LocalInvocationID.x + e * 256;
    return pc.transposeA != 0 ? uvec2(idx % BM, idx / BM) : uvec2(idx / BK, idx % BK);
}

uvec2 slotB(uint e)  // (k, n)
{
    uint idx = gl_LocalInvocationID.x + e * 256;
    return pc.transposeB != 0 ? uvec2(idx % BK, idx / BK) : uvec2(idx / BN, idx % BN);
}

void main()
{
    uint batch = gl_WorkGroupID.z;
    uint baseA = batch * pc.batchStrideA, baseB = batch * pc.batchStrideB;
    uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
    uint tx = gl_LocalInvocationID.x % 16, ty = gl_LocalInvocationID.x / 16;

    float staged[LOADS_A + LOADS_B];
    vec4 acc[8][2];
    for (int i = 0; i < 8; i++) { acc[i][0] = vec4(0.0); acc[i][1] = vec4(0.0); }

    // Prologue: tile 0 into shared buffer 0.
    for (uint e = 0; e < LOADS_A; e++) { uvec2 s = slotA(e); staged[e] = loadA(baseA, row0 + s.x, s.y); }
    for (uint e = 0; e < LOADS_B; e++) { uvec2 s = slotB(e); staged[LOADS_A + e] = loadB(baseB, s.x, col0 + s.y); }
    for (uint e = 0; e < LOADS_A; e++) { uvec2 s = slotA(e); tileA[0][s.y][s.x / 4][s.x % 4] = staged[e]; }
    for (uint e = 0; e < LOADS_B; e++) { uvec2 s = slotB(e); tileB[0][s.x][s.y / 4][s.y % 4] = staged[LOADS_A + e]; }
    barrier();

    uint tiles = (pc.k + BK - 1) / BK;
    for (uint t = 0; t < tiles; t++)
    {
        uint current = t & 1;
        bool more = t + 1 < tiles;
        // Global loads of the next tile go to registers while this tile is multiplied.
        if (more)
        {
            uint k0 = (t + 1) * BK;
            for (uint e = 0; e < LOADS_A; e++) { uvec2 s = slotA(e); staged[e] = loadA(baseA, row0 + s.x, k0 + s.y); }
            for (uint e = 0; e < LOADS_B; e++) { uvec2 s = slotB(e); staged[LOADS_A + e] = loadB(baseB, k0 + s.x, col0 + s.y); }
        }
        for (uint kk = 0; kk < BK; kk++)
        {
            vec4 a0 = tileA[current][kk][ty], a1 = tileA[current][kk][ty + 16];
            vec4 b0 = tileB[current][kk][tx], b1 = tileB[current][kk][tx + 16];
            float av[8] = float[8](a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w);
            for (int i = 0; i < 8; i++)
            {
                acc[i][0] += av[i] * b0;
                acc[i][1] += av[i] * b1;
            }
        }
        if (more)
        {
            uint next = current ^ 1;
            for (uint e = 0; e < LOADS_A; e++) { uvec2 s = slotA(e); tileA[next][s.y][s.x / 4][s.x % 4] = staged[e]; }
            for (uint e = 0; e < LOADS_B; e++) { uvec2 s = slotB(e); tileB[next][s.x][s.y / 4][s.y % 4] = staged[LOADS_A + e]; }
        }
        barrier();
    }

    for (int i = 0; i < 8; i++)
    {
        uint row = row0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
        for (int j = 0; j < 4; j++)
        {
            storeC(batch, row, col0 + tx * 4 + j, acc[i][0][j]);
            storeC(batch, row, col0 + 64 + tx * 4 + j, acc[i][1][j]);
        }
    }
}
