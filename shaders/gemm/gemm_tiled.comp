#version 460
// Portable GEMM for any device: 128 x 128 output tile per workgroup of 256 invocations, K in
// steps of 8 through double-buffered shared memory, an 8 x 8 register block per invocation
// (rows ty*4 + {0..3} and 64 + ty*4 + {0..3}, columns likewise with tx, so the shared-memory
// reads are vec4s without bank conflicts). Inputs f32, f16 or bf16 (IN_DTYPE), converted to f32
// on load; accumulation in f32. Works for any subgroup size; out-of-range elements load as 0.
// Each invocation loads 4 elements of each operand tile that are contiguous in memory (along the
// stored row), so f32 operands whose rows are multiples of 4 and 16-byte aligned load as one vec4
// (specialization constant VEC4_A / VEC4_B, set by the host).
//! variant gemm_tiled_f32 -DIN_DTYPE=0
//! variant gemm_tiled_f16 -DIN_DTYPE=1
//! variant gemm_tiled_bf16 -DIN_DTYPE=2
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "buffers.glsl"
#include "dtype.glsl"
#include "gemm_common.glsl"

#define BM 128
#define BN 128
#define BK 8

layout(local_size_x = 256) in;
layout(constant_id = 0) const uint VEC4_A = 0;
layout(constant_id = 1) const uint VEC4_B = 0;

shared vec4 tileA[2][BK][BM / 4];
shared vec4 tileB[2][BK][BN / 4];

// The 4 contiguous elements this invocation stages: the stored row 'row' and first column 'col'
// of the tile, for a stored tile of 'cols' columns (cols / 4 invocations per stored row).
void slot(uint cols, out uint row, out uint col)
{
    row = gl_LocalInvocationID.x / (cols / 4);
    col = (gl_LocalInvocationID.x % (cols / 4)) * 4;
}

// Loads stored elements [r, c .. c+3] of a matrix with 'rows' x 'cols' stored shape at 'base'.
vec4 load4(uint64_t address, uint base, uint r, uint c, uint rows, uint cols, bool vectorised)
{
    if (vectorised)
    {
        if (r >= rows || c >= cols) return vec4(0.0);
        return F32x4Buffer(address).v[(base + r * cols + c) / 4];
    }
    vec4 v = vec4(0.0);
    [[unroll]] for (uint i = 0; i < 4; i++)
        if (r < rows && c + i < cols) v[i] = loadAs(address, IN_DTYPE, base + r * cols + c + i);
    return v;
}

// Stages A's tile (rows row0.., k0..) into registers: 4 values of op(A) along m or k.
vec4 fetchA(uint base, uint row0, uint k0)
{
    uint r, c;
    if (pc.transposeA == 0) { slot(BK, r, c); return load4(pc.a, base, row0 + r, k0 + c, pc.m, pc.k, VEC4_A != 0); }
    slot(BM, r, c);
    return load4(pc.a, base, k0 + r, row0 + c, pc.k, pc.m, VEC4_A != 0);
}

vec4 fetchB(uint base, uint col0, uint k0)
{
    uint r, c;
    if (pc.transposeB == 0) { slot(BN, r, c); return load4(pc.b, base, k0 + r, col0 + c, pc.k, pc.n, VEC4_B != 0); }
    slot(BK, r, c);
    return load4(pc.b, base, col0 + r, k0 + c, pc.n, pc.k, VEC4_B != 0);
}

// Writes the staged values into shared memory laid out [k][m] and [k][n].
void stashA(uint stage, vec4 v)
{
    uint r, c;
    if (pc.transposeA == 0)
    {
        slot(BK, r, c);  // r = m, c..c+3 = k
        [[unroll]] for (uint i = 0; i < 4; i++) tileA[stage][c + i][r / 4][r % 4] = v[i];
    }
    else
    {
        slot(BM, r, c);  // r = k, c..c+3 = m
        tileA[stage][r][c / 4] = v;
    }
}

void stashB(uint stage, vec4 v)
{
    uint r, c;
    if (pc.transposeB == 0)
    {
        slot(BN, r, c);  // r = k, c..c+3 = n
        tileB[stage][r][c / 4] = v;
    }
    else
    {
        slot(BK, r, c);  // r = n, c..c+3 = k
        [[unroll]] for (uint i = 0; i < 4; i++) tileB[stage][c + i][r / 4][r % 4] = v[i];
    }
}

void main()
{
    uint batch = gl_WorkGroupID.z;
    uint baseA = batch * pc.batchStrideA, baseB = batch * pc.batchStrideB;
    uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
    uint tx = gl_LocalInvocationID.x % 16, ty = gl_LocalInvocationID.x / 16;

    vec4 acc[8][2];
    [[unroll]] for (int i = 0; i < 8; i++) { acc[i][0] = vec4(0.0); acc[i][1] = vec4(0.0); }

    vec4 stagedA = fetchA(baseA, row0, 0), stagedB = fetchB(baseB, col0, 0);
    stashA(0, stagedA);
    stashB(0, stagedB);
    barrier();

    uint tiles = (pc.k + BK - 1) / BK;
    for (uint t = 0; t < tiles; t++)
    {
        uint current = t & 1;
        bool more = t + 1 < tiles;
        // Global loads of the next tile go to registers while this tile is multiplied.
        if (more)
        {
            stagedA = fetchA(baseA, row0, (t + 1) * BK);
            stagedB = fetchB(baseB, col0, (t + 1) * BK);
        }
        [[unroll]] for (uint kk = 0; kk < BK; kk++)
        {
            vec4 a0 = tileA[current][kk][ty], a1 = tileA[current][kk][ty + 16];
            vec4 b0 = tileB[current][kk][tx], b1 = tileB[current][kk][tx + 16];
            float av[8] = float[8](a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w);
            [[unroll]] for (int i = 0; i < 8; i++)
            {
                acc[i][0] += av[i] * b0;
                acc[i][1] += av[i] * b1;
            }
        }
        if (more)
        {
            stashA(current ^ 1, stagedA);
            stashB(current ^ 1, stagedB);
        }
        barrier();
    }

    [[unroll]] for (int i = 0; i < 8; i++)
    {
        uint row = row0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
        [[unroll]] for (int j = 0; j < 4; j++)
        {
            storeC(batch, row, col0 + tx * 4 + j, acc[i][0][j]);
            storeC(batch, row, col0 + 64 + tx * 4 + j, acc[i][1][j]);
        }
    }
}
