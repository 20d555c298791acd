#version 460
// Tensor-core GEMM without shared memory: each subgroup loads its cooperative-matrix fragments
// straight from global memory (the L1 cache provides the reuse between the four subgroups of a
// workgroup) and computes a 64 x 64 block of C as 4 x 4 accumulators of 16 x 16. On the H100 this
// ran 2.5x faster than the shared-memory kernel gemm_coopmat.comp (bench/results run 5), so the host
// uses it whenever the problem tiles exactly: M and N multiples of 128, K a multiple of 16; either
// operand may be transposed (column-major fragment loads); C = alpha A B + beta C.
// PIPELINE=1: the fragments of step k + 16 are loaded into a second register set before the
// multiply-adds of step k, so loads are in flight while the tensor cores work (twice the fragment
// registers).
//! variant gemm_coopmat_direct_f16 -DINPUT_BF16=0 -DPIPELINE=0
//! variant gemm_coopmat_direct_bf16 -DINPUT_BF16=1 -DPIPELINE=0
//! variant gemm_coopmat_direct_pipelined_f16 -DINPUT_BF16=0 -DPIPELINE=1
//! variant gemm_coopmat_direct_pipelined_bf16 -DINPUT_BF16=1 -DPIPELINE=1
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

layout(buffer_reference, std430, buffer_reference_align = 16) buffer ElementBuffer { ELEMENT v[]; };
layout(local_size_x_id = 0) in;   // 4 subgroups: a 128 x 128 block of C per workgroup
layout(constant_id = 1) const uint TRANSPOSE_A = 0;
layout(constant_id = 2) const uint TRANSPOSE_B = 0;
// The problem's M, N, K when the host specialises the pipeline for one shape (0: read them from
// the push constants). Known sizes let the driver fold the address arithmetic and plan the loads.
layout(constant_id = 3) const uint SPEC_M = 0;
layout(constant_id = 4) const uint SPEC_N = 0;
layout(constant_id = 5) const uint SPEC_K = 0;

void main()
{
    const uint M = SPEC_M != 0 ? SPEC_M : pc.m, N = SPEC_N != 0 ? SPEC_N : pc.n, K = SPEC_K != 0 ? SPEC_K : pc.k;
    uint warp = gl_SubgroupID;
    uint row0 = gl_WorkGroupID.y * 128 + (warp / 2) * 64, col0 = gl_WorkGroupID.x * 128 + (warp % 2) * 64;
    coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator> acc[4][4];
    [[unroll]] for (int i = 0; i < 4; i++)
        [[unroll]] for (int j = 0; j < 4; j++) acc[i][j] = coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>(0.0);
    uint batch = gl_WorkGroupID.z;
    uint baseA = batch * pc.batchStrideA, baseB = batch * pc.batchStrideB;
    ElementBuffer a = ElementBuffer(pc.a), b = ElementBuffer(pc.b);
    // LOAD(fa, fb, step): the 4 A and 4 B fragments of the K step starting at step; MMA: 16 multiply-adds.
#define LOAD(fa, fb, step) \
    [[unroll]] for (uint i = 0; i < 4; i++) \
    { \
        if (TRANSPOSE_A == 0) coopMatLoad(fa[i], a.v, baseA + (row0 + i * 16) * K + (step), K, gl_CooperativeMatrixLayoutRowMajor); \
        else coopMatLoad(fa[i], a.v, baseA + (step) * M + row0 + i * 16, M, gl_CooperativeMatrixLayoutColumnMajor); \
    } \
    [[unroll]] for (uint j = 0; j < 4; j++) \
    { \
        if (TRANSPOSE_B == 0) coopMatLoad(fb[j], b.v, baseB + (step) * N + col0 + j * 16, N, gl_CooperativeMatrixLayoutRowMajor); \
        else coopMatLoad(fb[j], b.v, baseB + (col0 + j * 16) * K + (step), K, gl_CooperativeMatrixLayoutColumnMajor); \
    }
#define MMA(fa, fb) \
    [[unroll]] for (uint i = 0; i < 4; i++) \
        [[unroll]] for (uint j = 0; j < 4; j++) acc[i][j] = coopMatMulAdd(fa[i], fb[j], acc[i][j]);

    coopmat<ELEMENT, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> fragA[4];
    coopmat<ELEMENT, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB> fragB[4];
#if PIPELINE
    // Two register sets: set 0 holds steps k = 0, 32, 64, ..., set 1 steps 16, 48, ...
    coopmat<ELEMENT, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> nextA[4];
    coopmat<ELEMENT, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB> nextB[4];
    LOAD(fragA, fragB, 0)
    for (uint k = 0; k < K; k += 32)
    {
        bool second = k + 16 < K;
        if (second) { LOAD(nextA, nextB, k + 16) }
        MMA(fragA, fragB)
        if (!second) break;
        if (k + 32 < K) { LOAD(fragA, fragB, k + 32) }
        MMA(nextA, nextB)
    }
#else
    for (uint k = 0; k < K; k += 16)
    {
        LOAD(fragA, fragB, k)
        MMA(fragA, fragB)
    }
#endif
    F32Buffer c = F32Buffer(pc.c);
    uint baseC = batch * M * N;
    [[unroll]] for (uint i = 0; i < 4; i++)
        [[unroll]] for (uint j = 0; j < 4; j++)
        {
            uint at = baseC + (row0 + i * 16) * N + col0 + j * 16;
            coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator> result = acc[i][j] * pc.alpha;
            if (pc.beta != 0.0)
            {
                coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator> old;
                coopMatLoad(old, c.v, at, N, gl_CooperativeMatrixLayoutRowMajor);
                result = result + old * pc.beta;
            }
            coopMatStore(result, c.v, at, N, gl_CooperativeMatrixLayoutRowMajor);
        }
}
