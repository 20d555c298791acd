#version 460
// Tensor-core GEMM through VK_NV_cooperative_matrix2 with the kernel's own operand staging: one
// workgroup computes a 128 x 128 tile of C as a single workgroup-scope accumulator, as in
// gemm_coopmat2.comp, but the K steps (BK = 32) are staged through double-buffered shared memory
// by the kernel itself (gemm_staging.glsl), not by the driver: while the tensor cores multiply step
// t out of one buffer, every invocation holds its share of step t + 1 (4 uvec4 on 128 invocations)
// in registers and writes it to the other buffer afterwards, so one barrier a step separates the
// reads of a buffer from its next writes. gemm_coopmat2.comp lets the driver stage each step; on
// the H100 its pipelines reserve one step's blocks of shared memory (34-42 KiB for BK = 64), so
// the next step's global reads start only after the current step's multiply.
// TENSOR_LOADS=1 reads the staged blocks into the workgroup-scope matrices through tensor layouts
// over shared memory (coopMatLoadTensorNV, strides in elements), 0 through coopMatLoad (strides
// in 16-byte words): two ways to the same values, in case the driver serves one better.
// An experiment beside gemm_coopmat2.comp (VulkanBackend.CoopMat2Staged), not yet measured.
// Whole tiles only (M % 128 = N % 128 = K % 32 = 0; the host checks); C = alpha op(A) op(B) + beta C
// as in gemm_common.glsl; f16 or bf16 inputs, f32 accumulation.
//! variant gemm_cm2_staged_f16_128x128x32 -DINPUT_BF16=0 -DTENSOR_LOADS=0
//! variant gemm_cm2_staged_bf16_128x128x32 -DINPUT_BF16=1 -DTENSOR_LOADS=0
//! variant gemm_cm2_staged_tensor_f16_128x128x32 -DINPUT_BF16=0 -DTENSOR_LOADS=1
//! variant gemm_cm2_staged_tensor_bf16_128x128x32 -DINPUT_BF16=1 -DTENSOR_LOADS=1
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_NV_cooperative_matrix2 : require
#extension GL_KHR_memory_scope_semantics : require
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

layout(local_size_x_id = 0) in;             // the invocation count the device listed for the shape
layout(constant_id = 1) const uint TRANSPOSE_A = 0;
layout(constant_id = 2) const uint TRANSPOSE_B = 0;
// Specialisation constants 3-6 as in gemm_coopmat2.comp: M, N, K of the problem (0: from the
// push constants) and the rasterisation's group of tile rows.
layout(constant_id = 3) const uint SPEC_M = 0;
layout(constant_id = 4) const uint SPEC_N = 0;
layout(constant_id = 5) const uint SPEC_K = 0;
layout(constant_id = 6) const uint GROUP_ROWS = 0;

#define BM 128
#define BN 128
#define BK 32
#define STAGE_M (SPEC_M != 0 ? SPEC_M : pc.m)
#define STAGE_N (SPEC_N != 0 ? SPEC_N : pc.n)
#define STAGE_K (SPEC_K != 0 ? SPEC_K : pc.k)
#define STAGE_WHOLE_TILES 1
#include "gemm_staging.glsl"

const uint INVOCATIONS = gl_WorkGroupSize.x;
const uint LOADS = TILE_VECS / INVOCATIONS;   // 4 on 128 invocations, 2 on 256

void main()
{
    const uint M = SPEC_M != 0 ? SPEC_M : pc.m, N = SPEC_N != 0 ? SPEC_N : pc.n, K = SPEC_K != 0 ? SPEC_K : pc.k;
    uint batch = gl_WorkGroupID.z;
    uvec2 tile = rasterisedTile(GROUP_ROWS);
    uint row0 = tile.x * BM, col0 = tile.y * BN;
    uint baseA = batch * pc.batchStrideA, baseB = batch * pc.batchStrideB;

    coopmat<float, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator> acc = coopmat<float, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator>(0.0);

#if TENSOR_LOADS
    // The staged blocks as tensors of their stored shape (elements; rows of ROW_K or ROW_MN words);
    // a transposed operand is read through the view that swaps the two dimensions.
    tensorLayoutNV<2> stagedA = createTensorLayoutNV(2), stagedB = createTensorLayoutNV(2);
    stagedA = TRANSPOSE_A == 0 ? setTensorLayoutDimensionNV(stagedA, BM, BK) : setTensorLayoutDimensionNV(stagedA, BK, BM);
    stagedA = setTensorLayoutStrideNV(stagedA, 8 * (TRANSPOSE_A == 0 ? ROW_K : ROW_MN), 1);
    stagedB = TRANSPOSE_B == 0 ? setTensorLayoutDimensionNV(stagedB, BK, BN) : setTensorLayoutDimensionNV(stagedB, BN, BK);
    stagedB = setTensorLayoutStrideNV(stagedB, 8 * (TRANSPOSE_B == 0 ? ROW_MN : ROW_K), 1);
    tensorViewNV<2, false, 1, 0> transposed = createTensorViewNV(2, false, 1, 0);
#endif
    uvec4 wordsA[LOADS], wordsB[LOADS];
    uint slotsA[LOADS], slotsB[LOADS];
    [[unroll]] for (uint e = 0; e < LOADS; e++)
    {
        uint idx = gl_LocalInvocationID.x + e * INVOCATIONS;
        wordsA[e] = fetchA(baseA, row0, 0, idx, slotsA[e]);
        wordsB[e] = fetchB(baseB, col0, 0, idx, slotsB[e]);
    }
    [[unroll]] for (uint e = 0; e < LOADS; e++) { tileA[0][slotsA[e]] = wordsA[e]; tileB[0][slotsB[e]] = wordsB[e]; }
    barrier();

    uint steps = K / BK;
    for (uint t = 0; t < steps; t++)
    {
        uint current = t & 1;
        bool more = t + 1 < steps;
        if (more)
        {
            [[unroll]] for (uint e = 0; e < LOADS; e++)
            {
                uint idx = gl_LocalInvocationID.x + e * INVOCATIONS;
                wordsA[e] = fetchA(baseA, row0, (t + 1) * BK, idx, slotsA[e]);
                wordsB[e] = fetchB(baseB, col0, (t + 1) * BK, idx, slotsB[e]);
            }
        }
        // The staged blocks as stored: op(A) row-major from A's rows or column-major from A^T's,
        // op(B) row-major from B's rows or column-major from B^T's.
        coopmat<ELEMENT, gl_ScopeWorkgroup, BM, BK, gl_MatrixUseA> blockA;
        coopmat<ELEMENT, gl_ScopeWorkgroup, BK, BN, gl_MatrixUseB> blockB;
#if TENSOR_LOADS
        if (TRANSPOSE_A == 0) coopMatLoadTensorNV(blockA, tileA[current], 0, stagedA);
        else coopMatLoadTensorNV(blockA, tileA[current], 0, stagedA, transposed);
        if (TRANSPOSE_B == 0) coopMatLoadTensorNV(blockB, tileB[current], 0, stagedB);
        else coopMatLoadTensorNV(blockB, tileB[current], 0, stagedB, transposed);
#else
        if (TRANSPOSE_A == 0) coopMatLoad(blockA, tileA[current], 0, ROW_K, gl_CooperativeMatrixLayoutRowMajor);
        else coopMatLoad(blockA, tileA[current], 0, ROW_MN, gl_CooperativeMatrixLayoutColumnMajor);
        if (TRANSPOSE_B == 0) coopMatLoad(blockB, tileB[current], 0, ROW_MN, gl_CooperativeMatrixLayoutRowMajor);
        else coopMatLoad(blockB, tileB[current], 0, ROW_K, gl_CooperativeMatrixLayoutColumnMajor);
#endif
        acc = coopMatMulAdd(blockA, blockB, acc);
        if (more)
        {
            uint next = current ^ 1;
            [[unroll]] for (uint e = 0; e < LOADS; e++) { tileA[next][slotsA[e]] = wordsA[e]; tileB[next][slotsB[e]] = wordsB[e]; }
        }
        barrier();
    }

    tensorLayoutNV<2> layoutC = createTensorLayoutNV(2);
    layoutC = setTensorLayoutDimensionNV(layoutC, M, N);
    uint baseC = batch * M * N;
    F32Buffer c = F32Buffer(pc.c);
    coopmat<float, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator> result = acc * pc.alpha;
    if (pc.beta != 0.0)
    {
        coopmat<float, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator> old;
        coopMatLoadTensorNV(old, c.v, baseC, sliceTensorLayoutNV(layoutC, row0, BM, col0, BN));
        result = result + old * pc.beta;
    }
    coopMatStoreTensorNV(result, c.v, baseC, sliceTensorLayoutNV(layoutC, row0, BM, col0, BN));
}
