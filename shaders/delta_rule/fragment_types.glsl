// What the kernels on tensor-core accumulator fragments share (state_fragments.glsl,
// chunk_fragments.glsl): VK_KHR_cooperative_matrix bf16 16 x 16 x 16 fragments with f32
// accumulation, and the split of an f32 tile into hi = bf16(x) and lo = bf16(x - hi) parts through
// the cooperative-matrix component-type conversion (one hardware conversion per element), stored
// into and loaded from shared regions of uvec4 (8 bf16 each) that hold a hi plane and, PLANE uvec4
// further on, a lo plane.
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_bfloat16 : require
#include "buffers.glsl"

#define ACC coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>
#define ACC_BF16 coopmat<bfloat16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>
#define FRAG_A coopmat<bfloat16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA>
#define FRAG_B coopmat<bfloat16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB>

// Stores f32 tile m as its hi and lo parts, row-major from uvec4 `first` of REGION (whose lo plane
// starts at PLANE; row stride `row` uvec4).
#define SPLIT_STORE(m, REGION, PLANE, first, row) \
    { \
        ACC_BF16 hiPart = ACC_BF16(m); \
        ACC_BF16 loPart = ACC_BF16((m) - ACC(hiPart)); \
        coopMatStore(hiPart, REGION, first, row, gl_CooperativeMatrixLayoutRowMajor); \
        coopMatStore(loPart, REGION, (PLANE) + (first), row, gl_CooperativeMatrixLayoutRowMajor); \
    }

// The hi and lo fragments of a 16 x 16 block at uvec4 `offset` of REGION's planes (LAYOUT: the
// cooperative-matrix layout constant, row- or column-major).
#define LOAD_SPLIT(hi, lo, REGION, PLANE, offset, row, LAYOUT) \
    coopMatLoad(hi, REGION, offset, row, LAYOUT); \
    coopMatLoad(lo, REGION, (PLANE) + (offset), row, LAYOUT)

// c += a b with a and b split (three multiplies), or with b exact (two).
#define MUL_SPLIT(c, aHi, aLo, bHi, bLo) \
    c = coopMatMulAdd(aHi, bLo, c); \
    c = coopMatMulAdd(aLo, bHi, c); \
    c = coopMatMulAdd(aHi, bHi, c)
#define MUL_EXACT_B(c, aHi, aLo, b) \
    c = coopMatMulAdd(aLo, b, c); \
    c = coopMatMulAdd(aHi, b, c)
