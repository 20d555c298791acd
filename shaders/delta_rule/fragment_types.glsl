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

// Whether f32 operands enter the products as hi and lo parts (true: x y to about f32 precision, three
// multiplies per product) or rounded to bf16 to nearest, hi only (false, the host's default since run
// 84: one multiply and half the shared-memory traffic; within 1e-2 norm-wise, the precision
// flash-linear-attention keeps).
// Specialisation constant 0 of every kernel on fragments (VulkanBackend.DeltaRuleCoopMatSplit). The
// _PARTS forms take the choice as an argument, for products that always split (the 16 x 16 inverse
// of chunk_wy_fragments.comp).
layout(constant_id = 0) const bool SPLIT_OPERANDS = true;

// Whether the intermediates that later stages use only as rounded product operands (W, X, U', the
// chunk-start states S_0, dU', dS_C, dW) are stored as bf16 instead of f32 (specialisation constant 3 of
// every kernel on fragments; VulkanBackend.DeltaRuleUsesCompactIntermediates, rounded mode only). Each
// is stored as nearestBf16 of its f32 value, which is exactly the hi part every consumer would stage
// from the f32 tensor, so the results are bit for bit those of f32 storage while every such tensor
// moves half the bytes. U and dU'_local, which enter f32 sums (U' = U - W S^T, dU' = dU'_local +
// K dS_C^T), stay f32.
layout(constant_id = 3) const bool COMPACT = false;

// Whether the rule's own outputs and gradients are bf16 (specialisation constant 5 of every kernel on
// fragments; VulkanBackend.DeltaRuleStoresHalf, rounded mode only): o is stored, dO read, and dq, dk,
// dv stored as bf16 rounded to nearest, where the caller's tensors are bf16 (as flash-linear-attention
// keeps them for bf16 inputs). Rounded, an f32 dO enters every product as bf16(dO) anyway, so a bf16
// dO staged as it is gives the same operands.
layout(constant_id = 5) const bool HALF_IO = false;

// Whether the f32 summand this kernel writes or reads is bf16 (specialisation constant 10;
// VulkanBackend.DeltaRuleCompactSummands, which the host turns into this constant from the tensor's own
// dtype): dU'_local (the values gradient writes it, the backward state pass reads it into
// dU' = dU'_local + K dS_C^T) and, where HALF_IO, the q, k gradients' partial dK (the WY backward reads
// it and adds its own parts). Each is stored rounded to nearest bf16 and widened exactly where read,
// the sum itself in f32: unlike COMPACT this changes results, by one more bf16 rounding of one addend,
// as flash-linear-attention keeps dv and dk in bf16; it halves the bytes of two tensors written once
// and read about once. Stage 1 and the _jit forward state pass take it for U (U' = U - W S^T) instead
// (VulkanBackend.DeltaRuleCompactU, the _jit pass only; on by default since run 117).
layout(constant_id = 10) const bool COMPACT_SUMMANDS = false;

// m with every element rounded to the nearest bf16 value (ties to even; NaN kept), so that the
// conversion to ACC_BF16 after it is exact. The component-type conversion alone very likely rounds
// toward zero on the H100 (docs/ops.md, "Rounding"; Vulkan leaves the direction to the driver): a rounded operand then carries a one-sided error of up to
// 2^-8 relative instead of a two-sided one of up to 2^-9, and along the chunk recurrence the
// one-sided errors add up (the final state at B1 H3 T192 Dk 64 Dv 96: 1.04e-2 norm-wise measured,
// run 79; modelled in tools/delta_bf16_storage.py, 1.11e-2 toward zero, 4.8e-3 to nearest). Split
// operands need no such step: lo = bf16(m - hi) keeps what hi drops, to 2^-16 relative either way.
ACC nearestBf16(ACC m)
{
    [[unroll]] for (int e = 0; e < m.length(); e++)
    {
        float x = m[e];
        uint bits = floatBitsToUint(x);
        m[e] = isnan(x) ? x : uintBitsToFloat((bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u);
    }
    return m;
}

// x rounded to the nearest bf16 (ties to even; NaN kept quiet), as its 16 bits.
uint nearestBf16Bits(float x)
{
    uint bits = floatBitsToUint(x);
    return isnan(x) ? (bits >> 16) | 0x40u : (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
}

// Eight consecutive values as bf16 rounded to nearest, packed in order (value 2i in word i's low half).
uvec4 packNearestBf16(float x[8])
{
    uvec4 packed;
    [[unroll]] for (uint i = 0; i < 4; i++) packed[i] = nearestBf16Bits(x[2 * i]) | (nearestBf16Bits(x[2 * i + 1]) << 16);
    return packed;
}

// The 8 bf16 values packed in order in a 16-byte word (packNearestBf16's layout), widened exactly.
void unpackBf16(uvec4 packed, out float x[8])
{
    [[unroll]] for (uint i = 0; i < 4; i++)
    {
        x[2 * i] = uintBitsToFloat(packed[i] << 16);
        x[2 * i + 1] = uintBitsToFloat(packed[i] & 0xFFFF0000u);
    }
}

// Stores f32 tile m as its hi and, where split, lo parts, row-major from uvec4 `first` of REGION
// (whose lo plane starts at PLANE; row stride `row` uvec4). Rounded (split false), hi is m rounded to
// nearest (nearestBf16).
#define SPLIT_STORE_PARTS(split, m, REGION, PLANE, first, row) \
    { \
        ACC_BF16 hiPart; \
        if (split) hiPart = ACC_BF16(m); \
        else hiPart = ACC_BF16(nearestBf16(m)); \
        coopMatStore(hiPart, REGION, first, row, gl_CooperativeMatrixLayoutRowMajor); \
        if (split) \
        { \
            ACC_BF16 loPart = ACC_BF16((m) - ACC(hiPart)); \
            coopMatStore(loPart, REGION, (PLANE) + (first), row, gl_CooperativeMatrixLayoutRowMajor); \
        } \
    }
#define SPLIT_STORE(m, REGION, PLANE, first, row) SPLIT_STORE_PARTS(SPLIT_OPERANDS, m, REGION, PLANE, first, row)

// The hi and (where split) lo fragments of a 16 x 16 block at uvec4 `offset` of REGION's planes
// (LAYOUT: the cooperative-matrix layout constant, row- or column-major). Rounded, lo is left unset
// and nothing reads it.
#define LOAD_SPLIT_PARTS(split, hi, lo, REGION, PLANE, offset, row, LAYOUT) \
    coopMatLoad(hi, REGION, offset, row, LAYOUT); \
    if (split) coopMatLoad(lo, REGION, (PLANE) + (offset), row, LAYOUT)
#define LOAD_SPLIT(hi, lo, REGION, PLANE, offset, row, LAYOUT) LOAD_SPLIT_PARTS(SPLIT_OPERANDS, hi, lo, REGION, PLANE, offset, row, LAYOUT)

// c += a b with a and b split (three multiplies; one, hi by hi, rounded), with b exact (two; one),
// or with a exact (MUL_LO: the b_lo term, which the caller adds to its a b_hi).
#define MUL_SPLIT_PARTS(split, c, aHi, aLo, bHi, bLo) \
    if (split) \
    { \
        c = coopMatMulAdd(aHi, bLo, c); \
        c = coopMatMulAdd(aLo, bHi, c); \
    } \
    c = coopMatMulAdd(aHi, bHi, c)
#define MUL_SPLIT(c, aHi, aLo, bHi, bLo) MUL_SPLIT_PARTS(SPLIT_OPERANDS, c, aHi, aLo, bHi, bLo)
#define MUL_EXACT_B(c, aHi, aLo, b) \
    if (SPLIT_OPERANDS) c = coopMatMulAdd(aLo, b, c); \
    c = coopMatMulAdd(aHi, b, c)
#define MUL_LO(c, a, bLo) if (SPLIT_OPERANDS) c = coopMatMulAdd(a, bLo, c)

// A 64 x 64 bf16 block is 512 uvec4 (8 per row): in a workgroup of 256 invocations, piece q < 2 of
// invocation i is row rawRow(q), uvec4 rawColumn(q). Compact intermediates are read this way, with
// 16-byte loads, and copied into a shared region's hi plane as they are (the layout SPLIT_STORE
// gives), not as bf16 accumulator fragments, whose loads from memory made the state passes up to 60%
// slower (bench/results/2026-12-06-h100-run83.txt).
// A workgroup of 128 invocations (RAW_PIECES 4, defined before the include) takes four pieces each.
#ifndef RAW_PIECES
#define RAW_PIECES 2
#endif
#if RAW_PIECES == 2
uint rawRow(uint q) { return (gl_LocalInvocationID.x + 256 * q) / 8; }
uint rawColumn(uint q) { return (gl_LocalInvocationID.x + 256 * q) % 8; }
#else
uint rawRow(uint q) { return (gl_LocalInvocationID.x + (512 / RAW_PIECES) * q) / 8; }
uint rawColumn(uint q) { return (gl_LocalInvocationID.x + (512 / RAW_PIECES) * q) % 8; }
#endif
// This invocation's two pieces of the 64 x 64 block of a bf16 tensor at `address` whose element
// (0, 0) is element `origin`, rows `stride` elements apart (origin and stride multiples of 8).
#define LOAD_RAW_BLOCK(raw, address, origin, stride) \
    [[unroll]] for (uint q = 0; q < RAW_PIECES; q++) raw[q] = Words4Buffer(address).v[((origin) + rawRow(q) * (stride)) / 8 + rawColumn(q)]
// The pieces into REGION from uvec4 `base` on (0: its hi plane), rows `row` uvec4 apart.
#define PUT_RAW_BLOCK_AT(raw, REGION, base, row) \
    [[unroll]] for (uint q = 0; q < RAW_PIECES; q++) REGION[(base) + rawRow(q) * (row) + rawColumn(q)] = raw[q]
#define PUT_RAW_BLOCK(raw, REGION, row) PUT_RAW_BLOCK_AT(raw, REGION, 0, row)

// Stores ACC m as the tile at element `offset` of the intermediate at `address`: as nearestBf16(m)
// where `compact`, else f32.
#define STORE_INTERMEDIATE(compact, m, address, offset, stride) \
    { \
        if (compact) coopMatStore(ACC_BF16(nearestBf16(m)), Words4Buffer(address).v, (offset) / 8, (stride) / 8, gl_CooperativeMatrixLayoutRowMajor); \
        else coopMatStore(m, F32Buffer(address).v, offset, stride, gl_CooperativeMatrixLayoutRowMajor); \
    }
