#version 460
// Tensor-core GEMM through VK_KHR_cooperative_matrix: f16 or bf16 inputs, f32 accumulation.
// A workgroup of WARPS_M x WARPS_N subgroups computes a 128 x 128 tile of C; each subgroup owns
// a (TM * 16) x (TN * 16) part as TM x TN accumulators of 16 x 16 (the shape the host checked the
// device lists). Variants: 4 subgroups of 64 x 64, or 8 subgroups of 64 x 32 (more subgroups per
// SM to hide latency, fewer registers each).
// K advances in steps of 32 through double-buffered shared memory: while the tensor cores
// multiply tile t, every invocation holds its share of tile t+1 (uvec4 = 8 elements) in registers.
// Requirements the host checks: the stored contiguous axis of A and B is a multiple of 8 and both
// start 16-byte aligned, so every uvec4 is wholly inside or wholly outside the matrix.
// Shared-memory layouts follow the stored layout (gemm_staging.glsl: rows padded by 8 elements
// against bank conflicts), and the coopmat loads read them row- or column-major accordingly.
//! variant gemm_coopmat_f16_w4 -DINPUT_BF16=0 -DWARPS_N=2 -DTN=4
//! variant gemm_coopmat_bf16_w4 -DINPUT_BF16=1 -DWARPS_N=2 -DTN=4
//! variant gemm_coopmat_f16_w8 -DINPUT_BF16=0 -DWARPS_N=4 -DTN=2
//! variant gemm_coopmat_bf16_w8 -DINPUT_BF16=1 -DWARPS_N=4 -DTN=2
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#if INPUT_BF16
#extension GL_EXT_bfloat16 : require
#define ELEMENT bfloat16_t
#else
#define ELEMENT float16_t
#endif
#include "buffers.glsl"
#include "gemm_common.glsl"

#define WARPS_M 2
#define TM 4
#define WARPS (WARPS_M * WARPS_N)
layout(local_size_x_id = 0) in;             // WARPS subgroups
layout(constant_id = 1) const uint TRANSPOSE_A = 0;
layout(constant_id = 2) const uint TRANSPOSE_B = 0;

#define BM 128
#define BN 128
#define BK 32
#define STAGE_M pc.m
#define STAGE_N pc.n
#define STAGE_K pc.k
#define STAGE_WHOLE_TILES 0
#include "gemm_staging.glsl"

const uint INVOCATIONS = gl_WorkGroupSize.x;
const uint LOADS = TILE_VECS / INVOCATIONS;   // 4 (2) for 4 (8) subgroups of 32

void main()
{
    uint batch = gl_WorkGroupID.z;
    uint baseA = batch * pc.batchStrideA, baseB = batch * pc.batchStrideB;
    uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
    uint warp = gl_SubgroupID;
    uint warpRow = (warp / WARPS_N) * (TM * 16), warpCol = (warp % WARPS_N) * (TN * 16);

    coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator> acc[TM][TN];
    [[unroll]] for (int i = 0; i < TM; i++)
        [[unroll]] for (int j = 0; j < TN; j++)
            acc[i][j] = coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>(0.0);

    uvec4 stagedA[LOADS], stagedB[LOADS];
    uint slotsA[LOADS], slotsB[LOADS];
    [[unroll]] for (uint e = 0; e < LOADS; e++)
    {
        uint idx = gl_LocalInvocationID.x + e * INVOCATIONS;
        stagedA[e] = fetchA(baseA, row0, 0, idx, slotsA[e]);
        stagedB[e] = fetchB(baseB, col0, 0, idx, slotsB[e]);
    }
    [[unroll]] for (uint e = 0; e < LOADS; e++) { tileA[0][slotsA[e]] = stagedA[e]; tileB[0][slotsB[e]] = stagedB[e]; }
    barrier();

    uint tiles = (pc.k + BK - 1) / BK;
    for (uint t = 0; t < tiles; t++)
    {
        uint current = t & 1;
        bool more = t + 1 < tiles;
        if (more)
        {
            [[unroll]] for (uint e = 0; e < LOADS; e++)
            {
                uint idx = gl_LocalInvocationID.x + e * INVOCATIONS;
                stagedA[e] = fetchA(baseA, row0, (t + 1) * BK, idx, slotsA[e]);
                stagedB[e] = fetchB(baseB, col0, (t + 1) * BK, idx, slotsB[e]);
            }
        }
        [[unroll]] for (uint kk = 0; kk < BK; kk += 16)
        {
            coopmat<ELEMENT, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> fragA[TM];
            coopmat<ELEMENT, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB> fragB[TN];
            [[unroll]] for (uint i = 0; i < TM; i++)
            {
                uint m = warpRow + i * 16;
                if (TRANSPOSE_A == 0) coopMatLoad(fragA[i], tileA[current], m * ROW_K + kk / 8, ROW_K, gl_CooperativeMatrixLayoutRowMajor);
                else coopMatLoad(fragA[i], tileA[current], kk * ROW_MN + m / 8, ROW_MN, gl_CooperativeMatrixLayoutColumnMajor);
            }
            [[unroll]] for (uint j = 0; j < TN; j++)
            {
                uint n = warpCol + j * 16;
                if (TRANSPOSE_B == 0) coopMatLoad(fragB[j], tileB[current], kk * ROW_MN + n / 8, ROW_MN, gl_CooperativeMatrixLayoutRowMajor);
                else coopMatLoad(fragB[j], tileB[current], n * ROW_K + kk / 8, ROW_K, gl_CooperativeMatrixLayoutColumnMajor);
            }
            [[unroll]] for (uint i = 0; i < TM; i++)
                [[unroll]] for (uint j = 0; j < TN; j++)
                    acc[i][j] = coopMatMulAdd(fragA[i], fragB[j], acc[i][j]);
        }
        if (more)
        {
            uint next = current ^ 1;
            [[unroll]] for (uint e = 0; e < LOADS; e++) { tileA[next][slotsA[e]] = stagedA[e]; tileB[next][slotsB[e]] = stagedB[e]; }
        }
        barrier();
    }

    // Epilogue: each 16 x 16 accumulator goes through this subgroup's 1 KiB of scratch (the
    // first buffer of tileA, free after the loop's last barrier) so that edges and
    // C = alpha acc + beta C are handled per element.
    uint lane = gl_SubgroupInvocationID, lanes = gl_SubgroupSize;
    uint scratch = warp * 64;  // 64 uvec4 = 256 floats per subgroup
    [[unroll]] for (uint i = 0; i < TM; i++)
        [[unroll]] for (uint j = 0; j < TN; j++)
        {
            coopMatStore(acc[i][j], tileA[0], scratch, 4, gl_CooperativeMatrixLayoutRowMajor);
            subgroupBarrier();
            for (uint e = lane; e < 256; e += lanes)
                storeC(batch, row0 + warpRow + i * 16 + e / 16, col0 + warpCol + j * 16 + e % 16, uintBitsToFloat(tileA[0][scratch + e / 4][e % 4]));
            subgroupBarrier();
        }
}
