#version 460
// Tensor-core GEMM through VK_NV_cooperative_matrix2: one workgroup computes a BM x BN tile of C as a
// single workgroup-scope accumulator; K advances in steps of BK, each step one workgroup-scope
// multiply-add of a BM x BK block of op(A) and a BK x BN block of op(B). The blocks are read
// through tensor layouts straight from the stored matrices, so the driver chooses the staging
// (shared memory, asynchronous copies, the newest tensor-core instructions); transposed operands are
// read through a tensor view that swaps the two dimensions.
// CLAMP=1: the layouts clamp to zero outside the stored matrix (any M, N, K; stores outside C are
// dropped). CLAMP=0: the host guarantees whole tiles (M % BM = N % BN = K % BK = 0).
// C = alpha op(A) op(B) + beta C as in gemm_common.glsl; f16 or bf16 inputs, f32 accumulation.
// Used only when the device lists a workgroup-scope flexible shape whose granularities divide
// BM, BN, BK for the workgroup size the host chose (DeviceCapabilities.HasFlexibleMatrix): first the
// size that leaves 128 accumulator floats to each invocation (BM BN / 128), so 128x128 tiles run on
// 128 invocations and 128x256 ones on 256.
//! variant gemm_cm2_f16_128x128x32 -DINPUT_BF16=0 -DBM=128 -DBN=128 -DBK=32 -DCLAMP=0
//! variant gemm_cm2_f16_128x256x32 -DINPUT_BF16=0 -DBM=128 -DBN=256 -DBK=32 -DCLAMP=0
//! variant gemm_cm2_f16_256x128x32 -DINPUT_BF16=0 -DBM=256 -DBN=128 -DBK=32 -DCLAMP=0
//! variant gemm_cm2_f16_128x128x64 -DINPUT_BF16=0 -DBM=128 -DBN=128 -DBK=64 -DCLAMP=0
//! variant gemm_cm2_f16_128x256x16 -DINPUT_BF16=0 -DBM=128 -DBN=256 -DBK=16 -DCLAMP=0
//! variant gemm_cm2_f16_128x128x16 -DINPUT_BF16=0 -DBM=128 -DBN=128 -DBK=16 -DCLAMP=0
//! variant gemm_cm2_f16_128x256x64 -DINPUT_BF16=0 -DBM=128 -DBN=256 -DBK=64 -DCLAMP=0
//! variant gemm_cm2_f16_128x128x32_clamp -DINPUT_BF16=0 -DBM=128 -DBN=128 -DBK=32 -DCLAMP=1
//! variant gemm_cm2_bf16_128x128x32 -DINPUT_BF16=1 -DBM=128 -DBN=128 -DBK=32 -DCLAMP=0
//! variant gemm_cm2_bf16_128x256x32 -DINPUT_BF16=1 -DBM=128 -DBN=256 -DBK=32 -DCLAMP=0
//! variant gemm_cm2_bf16_256x128x32 -DINPUT_BF16=1 -DBM=256 -DBN=128 -DBK=32 -DCLAMP=0
//! variant gemm_cm2_bf16_128x128x64 -DINPUT_BF16=1 -DBM=128 -DBN=128 -DBK=64 -DCLAMP=0
//! variant gemm_cm2_bf16_128x256x16 -DINPUT_BF16=1 -DBM=128 -DBN=256 -DBK=16 -DCLAMP=0
//! variant gemm_cm2_bf16_128x128x16 -DINPUT_BF16=1 -DBM=128 -DBN=128 -DBK=16 -DCLAMP=0
//! variant gemm_cm2_bf16_128x256x64 -DINPUT_BF16=1 -DBM=128 -DBN=256 -DBK=64 -DCLAMP=0
//! variant gemm_cm2_bf16_128x128x32_clamp -DINPUT_BF16=1 -DBM=128 -DBN=128 -DBK=32 -DCLAMP=1
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

layout(buffer_reference, std430, buffer_reference_align = 16) buffer ElementBuffer { ELEMENT v[]; };
layout(local_size_x_id = 0) in;             // the invocation count the device listed for the shape
layout(constant_id = 1) const uint TRANSPOSE_A = 0;
layout(constant_id = 2) const uint TRANSPOSE_B = 0;
// The problem's M, N, K when the host specialises the pipeline for one shape (0: read them from
// the push constants). Known sizes let the driver fold the address arithmetic and plan the loads.
layout(constant_id = 3) const uint SPEC_M = 0;
layout(constant_id = 4) const uint SPEC_N = 0;
layout(constant_id = 5) const uint SPEC_K = 0;
// GROUP_ROWS > 1: consecutive workgroups walk GROUP_ROWS tile rows together (rasterisedTile,
// gemm_common.glsl).
layout(constant_id = 6) const uint GROUP_ROWS = 0;

#if CLAMP
#define LAYOUT tensorLayoutNV<2, gl_CooperativeMatrixClampModeConstantNV>
#define NEW_LAYOUT() createTensorLayoutNV(2, gl_CooperativeMatrixClampModeConstantNV)
#else
#define LAYOUT tensorLayoutNV<2>
#define NEW_LAYOUT() createTensorLayoutNV(2)
#endif

void main()
{
    const uint M = SPEC_M != 0 ? SPEC_M : pc.m, N = SPEC_N != 0 ? SPEC_N : pc.n, K = SPEC_K != 0 ? SPEC_K : pc.k;
    uint batch = gl_WorkGroupID.z;
    uvec2 tile = rasterisedTile(GROUP_ROWS);
    uint row0 = tile.x * BM, col0 = tile.y * BN;
    ElementBuffer a = ElementBuffer(pc.a), b = ElementBuffer(pc.b);
    F32Buffer c = F32Buffer(pc.c);

    // Layouts describe the stored matrices: A is [M, K] or, transposed, [K, M]; B is [K, N] or [N, K].
    LAYOUT layoutA = NEW_LAYOUT();
    layoutA = TRANSPOSE_A == 0 ? setTensorLayoutDimensionNV(layoutA, M, K) : setTensorLayoutDimensionNV(layoutA, K, M);
    LAYOUT layoutB = NEW_LAYOUT();
    layoutB = TRANSPOSE_B == 0 ? setTensorLayoutDimensionNV(layoutB, K, N) : setTensorLayoutDimensionNV(layoutB, N, K);
    LAYOUT layoutC = NEW_LAYOUT();
    layoutC = setTensorLayoutDimensionNV(layoutC, M, N);
    // Reading a stored [cols, rows] slice as a rows x cols matrix.
    tensorViewNV<2, false, 1, 0> transposed = createTensorViewNV(2, false, 1, 0);

    uint baseA = batch * pc.batchStrideA, baseB = batch * pc.batchStrideB, baseC = batch * M * N;
    coopmat<float, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator> acc = coopmat<float, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator>(0.0);
    // Loading the next step's blocks before this step's multiply (a register prefetch) made every
    // tile about 35% slower on the H200 (bench/results/2026-12-01-h200-run25.txt): the driver
    // pipelines the loads itself.
    for (uint k = 0; k < K; k += BK)
    {
        coopmat<ELEMENT, gl_ScopeWorkgroup, BM, BK, gl_MatrixUseA> blockA;
        coopmat<ELEMENT, gl_ScopeWorkgroup, BK, BN, gl_MatrixUseB> blockB;
        if (TRANSPOSE_A == 0) coopMatLoadTensorNV(blockA, a.v, baseA, sliceTensorLayoutNV(layoutA, row0, BM, k, BK));
        else coopMatLoadTensorNV(blockA, a.v, baseA, sliceTensorLayoutNV(layoutA, k, BK, row0, BM), transposed);
        if (TRANSPOSE_B == 0) coopMatLoadTensorNV(blockB, b.v, baseB, sliceTensorLayoutNV(layoutB, k, BK, col0, BN));
        else coopMatLoadTensorNV(blockB, b.v, baseB, sliceTensorLayoutNV(layoutB, col0, BN, k, BK), transposed);
        acc = coopMatMulAdd(blockA, blockB, acc);
    }

    coopmat<float, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator> result = acc * pc.alpha;
    if (pc.beta != 0.0)
    {
        coopmat<float, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator> old;
        coopMatLoadTensorNV(old, c.v, baseC, sliceTensorLayoutNV(layoutC, row0, BM, col0, BN));
        result = result + old * pc.beta;
    }
    coopMatStoreTensorNV(result, c.v, baseC, sliceTensorLayoutNV(layoutC, row0, BM, col0, BN));
}
