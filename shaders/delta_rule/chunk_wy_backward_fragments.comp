#version 460
// Chunked delta rule, backward through the WY form of each chunk on tensor-core fragments: the
// gradients of chunk_wy_backward.comp with every product a chain of 16 x 16 x 16 bf16 fragment
// multiplies (f32 accumulation) whose results stay in accumulator fragments. One workgroup of 8
// subgroups of 32 per (chunk, b H + h); subgroup s owns result tiles (tr, tc) with tr = s / 2 and
// tc = 2 (s % 2) + {0, 1} of every 64 x 64 result (token rows 16 tr .., columns 16 tc ..).
// With X = A^-1 (stage 1, lower triangular), B_K = diag(beta) K, B_V = diag(beta) V, W = X B_K,
// U = X B_V and the incoming dU (= dU'), dW:
//   dX = dW B_K^T + dU B_V^T = (dW K^T + dU V^T) diag(beta)     (no read of W or U)
//   dA = -X^T dX X^T,  G = strictly_lower(dA)
//   dB_V = X^T dU:               dV = diag(beta) dB_V,             dbeta += rows(dB_V . V)
//   M = X^T dW + G K:            dK += diag(beta) M + G^T diag(beta) K,   dbeta += rows(M . K)
// (the same gradients as chunk_wy_backward.comp; dX X^T there is dU U^T + dW W^T, equal to the dX
// X^T here). X^T dW's part of dK and dbeta is added right away (dK updated in place), G K's and
// G^T diag(beta) K's at the end.
// Operands: K and V are bf16 (exact in one part) and read as fragments straight from the tensors;
// every f32 operand (X, dU, dW, dX, X^T dX, G) enters as two bf16 parts, hi = bf16(x), lo =
// bf16(x - hi), x y ~ x_hi y_hi + x_hi y_lo + x_lo y_hi: the precision of the other split products.
// Zero tiles of the triangular X and G are skipped. Results that need per-element work (the beta
// scalings, the mask of G, the row dot products, the adds into dK) go through a per-subgroup
// scratch tile: each lane then holds 8 consecutive values of one row (laneRow, laneColumn).
// Preconditions the host checks (VulkanBackend.DeltaRuleUsesWyBackwardFragments): T a multiple of
// 64, Dk 64 or 128, Dv 64 or 128, bf16 keys and values, subgroups of 32. Same push constants as
// chunk_wy_backward.comp (w and u are not read).
// Shared memory (47.9 KiB): region1 holds X (hi, lo), later G; region2 one 64-column block of dU or
// dW at a time, then dX, then Q = dX X^T, then diag(beta) G; all row-major bf16 with rows padded by 8
// elements against bank conflicts.
//! variant chunk_wy_backward_fragments -O0
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_bfloat16 : require
#include "buffers.glsl"
#include "dtype.glsl"

#define CHUNK 64
#define ROW 9                 // uvec4 per padded row of 64 bf16
#define PLANE (CHUNK * ROW)   // the lo plane's offset in a region
#define SCRATCH_ROW 5         // vec4 per padded row of a 16 x 16 f32 scratch tile
#define SCRATCH_TILE (16 * SCRATCH_ROW)

layout(local_size_x = 256) in;
layout(buffer_reference, std430, buffer_reference_align = 16) buffer Words4Buffer { uvec4 v[]; };

shared uvec4 region1[2 * PLANE];        // hi plane, then lo plane
shared uvec4 region2[2 * PLANE];
shared vec4 scratch[8 * SCRATCH_TILE];  // one 16 x 16 f32 tile per subgroup
shared float betas[CHUNK];
shared float rowSums[CHUNK][2];

#define ACC coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>
#define ACC_BF16 coopmat<bfloat16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>
#define FRAG_A coopmat<bfloat16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA>
#define FRAG_B coopmat<bfloat16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB>

layout(push_constant) uniform Push
{
    uint64_t k;
    uint64_t v;
    uint64_t beta;
    uint64_t x;
    uint64_t w;         // not read
    uint64_t u;         // not read
    uint64_t dUPrime;
    uint64_t dw;
    uint64_t dk;        // in: partial dK; out: dK
    uint64_t dv;        // out
    uint64_t dbeta;     // out
    uint t;
    uint heads;
    uint keyDim;
    uint valueDim;
    uint betaDtype;
} pc;

// This subgroup's result tiles: row tr, columns tileColumn(0) and tileColumn(1).
uint tileRow() { return gl_SubgroupID / 2; }
uint tileColumn(uint i) { return 2 * (gl_SubgroupID % 2) + i; }
// This lane's run of a tile in the scratch: row laneRow(), columns laneColumn() .. + 7.
uint laneRow() { return gl_SubgroupInvocationID / 2; }
uint laneColumn() { return 8 * (gl_SubgroupInvocationID % 2); }

// The lane's 8 values of tile m (through this subgroup's scratch tile).
void laneValues(ACC m, out float x[8])
{
    uint base = gl_SubgroupID * SCRATCH_TILE, at = base + laneRow() * SCRATCH_ROW + laneColumn() / 4;
    coopMatStore(m, scratch, base, SCRATCH_ROW, gl_CooperativeMatrixLayoutRowMajor);
    subgroupMemoryBarrierShared();
    subgroupBarrier();
    vec4 p = scratch[at], q = scratch[at + 1];
    x = float[8](p.x, p.y, p.z, p.w, q.x, q.y, q.z, q.w);
    subgroupBarrier();   // every lane has read before the scratch is written again
}

// hi = bf16(x), lo = bf16(x - hi) of 8 values, packed two per uint.
void splitBf16(float x[8], out uvec4 hi, out uvec4 lo)
{
    uint h[8], l[8];
    [[unroll]] for (uint e = 0; e < 8; e++)
    {
        h[e] = floatToBf16(x[e]);
        l[e] = floatToBf16(x[e] - bf16ToFloat(h[e]));
    }
    hi = uvec4(h[0] | (h[1] << 16), h[2] | (h[3] << 16), h[4] | (h[5] << 16), h[6] | (h[7] << 16));
    lo = uvec4(l[0] | (l[1] << 16), l[2] | (l[3] << 16), l[4] | (l[5] << 16), l[6] | (l[7] << 16));
}

// Writes the lane's 8 values of tile (tr, tc) as hi and lo parts into REGION.
#define PUT_LANE_SPLIT(REGION, tr, tc, x) \
    { \
        uvec4 hiPart, loPart; \
        splitBf16(x, hiPart, loPart); \
        uint slot = (16 * (tr) + laneRow()) * ROW + 2 * (tc) + laneColumn() / 8; \
        REGION[slot] = hiPart; \
        REGION[PLANE + slot] = loPart; \
    }

// Stores f32 tile m as hi and lo parts at tile (tr, tc) of REGION (hardware conversion).
#define SPLIT_STORE(m, REGION, tr, tc) \
    { \
        ACC_BF16 hiPart = ACC_BF16(m); \
        ACC_BF16 loPart = ACC_BF16((m) - ACC(hiPart)); \
        coopMatStore(hiPart, REGION, 16 * (tr) * ROW + 2 * (tc), ROW, gl_CooperativeMatrixLayoutRowMajor); \
        coopMatStore(loPart, REGION, PLANE + 16 * (tr) * ROW + 2 * (tc), ROW, gl_CooperativeMatrixLayoutRowMajor); \
    }

// hi and lo fragments of tile (tr, tc) of REGION, row-major, or transposed (the tile (tc, tr) of the
// transpose) through a column-major load.
#define LOAD_SPLIT(hi, lo, REGION, tr, tc, LAYOUT) \
    coopMatLoad(hi, REGION, 16 * (tr) * ROW + 2 * (tc), ROW, LAYOUT); \
    coopMatLoad(lo, REGION, PLANE + 16 * (tr) * ROW + 2 * (tc), ROW, LAYOUT)

// c += a b with a and b split (three multiplies), or with b exact (two).
#define MUL_SPLIT(c, aHi, aLo, bHi, bLo) \
    c = coopMatMulAdd(aHi, bLo, c); \
    c = coopMatMulAdd(aLo, bHi, c); \
    c = coopMatMulAdd(aHi, bHi, c)
#define MUL_EXACT_B(c, aHi, aLo, b) \
    c = coopMatMulAdd(aLo, b, c); \
    c = coopMatMulAdd(aHi, b, c)

void main()
{
    uint n = gl_WorkGroupID.x, bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads;
    uint t0 = n * CHUNK, chunks = pc.t / CHUNK, tr = tileRow(), id = gl_LocalInvocationID.x;
    uint keyStride = pc.heads * pc.keyDim, valueStride = pc.heads * pc.valueDim;   // between consecutive tokens
    uint keyBlocks = pc.keyDim / 64, valueBlocks = pc.valueDim / 64, blocks = valueBlocks + keyBlocks;
    uint firstToken = b * pc.t + t0;
    // The lane's row of every result tile it touches, and its beta.
    uint laneToken = firstToken + 16 * tr + laneRow();
    Words4Buffer keys = Words4Buffer(pc.k), values = Words4Buffer(pc.v);

    if (id < CHUNK) betas[id] = loadAs(pc.beta, pc.betaDtype, (firstToken + id) * pc.heads + h);

    // Block i of the f32 operands staged in region2: dU's 64-column blocks, then dW's.
#define BLOCK_ORIGIN(i, j) ((i) < valueBlocks \
        ? (firstToken + 16 * tr) * valueStride + h * pc.valueDim + 64 * (i) + 16 * tileColumn(j) \
        : (firstToken + 16 * tr) * keyStride + h * pc.keyDim + 64 * ((i) - valueBlocks) + 16 * tileColumn(j))
#define FETCH_BLOCK(i) \
    [[unroll]] for (uint j = 0; j < 2; j++) \
        coopMatLoad(pending[j], F32Buffer((i) < valueBlocks ? pc.dUPrime : pc.dw).v, BLOCK_ORIGIN(i, j), \
                    (i) < valueBlocks ? valueStride : keyStride, gl_CooperativeMatrixLayoutRowMajor)
    ACC pending[2];
    FETCH_BLOCK(0);

    // X (hi, lo) into region1: the tiles on and below the diagonal (X is unit lower triangular).
    uint inverseOrigin = (bh * chunks + n) * CHUNK * CHUNK;
    [[unroll]] for (uint j = 0; j < 2; j++)
        if (tileColumn(j) <= tr)
        {
            ACC tile;
            coopMatLoad(tile, F32Buffer(pc.x).v, inverseOrigin + 16 * tr * CHUNK + 16 * tileColumn(j), CHUNK, gl_CooperativeMatrixLayoutRowMajor);
            SPLIT_STORE(tile, region1, tr, tileColumn(j))
        }
    barrier();
    float laneBeta = betas[16 * tr + laneRow()];
    // X^T's fragments of row tr: slice d is the transpose of X's tile (d, tr), zero for d < tr.
    FRAG_A xtHi[4], xtLo[4];
    [[unroll]] for (uint d = 0; d < 4; d++)
        if (d >= tr) { LOAD_SPLIT(xtHi[d], xtLo[d], region1, d, tr, gl_CooperativeMatrixLayoutColumnMajor); }
    float betaPartial = 0.0;   // the lane's share of dbeta for its row

    // Blocks of dU (with V), then of dW (with K):
    //   dXraw += block . (V or K block)^T       (64 x 64 over tokens)
    //   R = X^T block:  dU: dV = diag(beta) R, dbeta += rows(R . V)
    //                   dW: dK += diag(beta) R,  dbeta += rows(R . K)
    ACC dxRaw[2];
    [[unroll]] for (uint j = 0; j < 2; j++) dxRaw[j] = ACC(0.0);
    for (uint i = 0; i < blocks; i++)
    {
        bool valueBlock = i < valueBlocks;
        Words4Buffer inputs = valueBlock ? values : keys;
        uint stride = valueBlock ? valueStride : keyStride, column0 = valueBlock ? h * pc.valueDim + 64 * i : h * pc.keyDim + 64 * (i - valueBlocks);
        if (i > 0) barrier();   // the previous block's products are done reading region2
        [[unroll]] for (uint j = 0; j < 2; j++) SPLIT_STORE(pending[j], region2, tr, tileColumn(j))
        if (i + 1 < blocks) { FETCH_BLOCK(i + 1); }
        barrier();
        // dXraw: A = the block's rows tr (split), B = (V or K)^T, a column-major load of its rows tc
        [[unroll]] for (uint j = 0; j < 2; j++)
            [[unroll]] for (uint d = 0; d < 4; d++)
            {
                FRAG_A aHi, aLo;
                FRAG_B transposed;
                LOAD_SPLIT(aHi, aLo, region2, tr, d, gl_CooperativeMatrixLayoutRowMajor);
                coopMatLoad(transposed, inputs.v, ((firstToken + 16 * tileColumn(j)) * stride + column0 + 16 * d) / 8, stride / 8,
                            gl_CooperativeMatrixLayoutColumnMajor);
                MUL_EXACT_B(dxRaw[j], aHi, aLo, transposed);
            }
        // R = X^T block
        [[unroll]] for (uint j = 0; j < 2; j++)
        {
            ACC r = ACC(0.0);
            [[unroll]] for (uint d = 0; d < 4; d++)
                if (d >= tr)
                {
                    FRAG_B bHi, bLo;
                    LOAD_SPLIT(bHi, bLo, region2, d, tileColumn(j), gl_CooperativeMatrixLayoutRowMajor);
                    MUL_SPLIT(r, xtHi[d], xtLo[d], bHi, bLo);
                }
            float x[8];
            laneValues(r, x);
            uint at = laneToken * stride + column0 + 16 * tileColumn(j) + laneColumn();
            uvec4 packed = inputs.v[at / 8];
            [[unroll]] for (uint e = 0; e < 8; e++)
                betaPartial = fma(x[e], bf16ToFloat(e % 2 == 0 ? packed[e / 2] & 0xFFFFu : packed[e / 2] >> 16), betaPartial);
            F32x4Buffer target = F32x4Buffer(valueBlock ? pc.dv : pc.dk);
            vec4 low = vec4(x[0], x[1], x[2], x[3]) * laneBeta, high = vec4(x[4], x[5], x[6], x[7]) * laneBeta;
            if (valueBlock) { target.v[at / 4] = low; target.v[at / 4 + 1] = high; }
            else { target.v[at / 4] += low; target.v[at / 4 + 1] += high; }
        }
    }
    barrier();   // the last block's products are done reading region2

    // dX = dXraw diag(beta) (split) into region2
    [[unroll]] for (uint j = 0; j < 2; j++)
    {
        float x[8];
        laneValues(dxRaw[j], x);
        [[unroll]] for (uint e = 0; e < 8; e++) x[e] *= betas[16 * tileColumn(j) + laneColumn() + e];
        PUT_LANE_SPLIT(region2, tr, tileColumn(j), x)
    }
    barrier();
    // Q = dX X^T: B slice d is the transpose of X's tile (tc, d), zero for d > tc
    ACC q[2];
    [[unroll]] for (uint j = 0; j < 2; j++)
    {
        q[j] = ACC(0.0);
        [[unroll]] for (uint d = 0; d < 4; d++)
            if (d <= tileColumn(j))
            {
                FRAG_A aHi, aLo;
                FRAG_B bHi, bLo;
                LOAD_SPLIT(aHi, aLo, region2, tr, d, gl_CooperativeMatrixLayoutRowMajor);
                LOAD_SPLIT(bHi, bLo, region1, tileColumn(j), d, gl_CooperativeMatrixLayoutColumnMajor);
                MUL_SPLIT(q[j], aHi, aLo, bHi, bLo);
            }
    }
    barrier();   // dX and X are read: region1 is free, region2 takes Q
    [[unroll]] for (uint j = 0; j < 2; j++) SPLIT_STORE(q[j], region2, tr, tileColumn(j))
    barrier();
    // dA = -X^T Q on and below the diagonal tiles (G is zero above them)
    ACC da[2];
    [[unroll]] for (uint j = 0; j < 2; j++)
    {
        da[j] = ACC(0.0);
        if (tileColumn(j) <= tr)
            [[unroll]] for (uint d = 0; d < 4; d++)
                if (d >= tr)
                {
                    FRAG_B bHi, bLo;
                    LOAD_SPLIT(bHi, bLo, region2, d, tileColumn(j), gl_CooperativeMatrixLayoutRowMajor);
                    MUL_SPLIT(da[j], xtHi[d], xtLo[d], bHi, bLo);
                }
    }
    barrier();   // Q is read: region2 takes diag(beta) G
    // G = strictly_lower(-dA) into region1, diag(beta) G into region2 (the tiles above the diagonal
    // are never read)
    [[unroll]] for (uint j = 0; j < 2; j++)
        if (tileColumn(j) <= tr)
        {
            float g[8];
            laneValues(da[j], g);
            [[unroll]] for (uint e = 0; e < 8; e++)
                g[e] = tileColumn(j) < tr || laneColumn() + e < laneRow() ? -g[e] : 0.0;
            PUT_LANE_SPLIT(region1, tr, tileColumn(j), g)
            [[unroll]] for (uint e = 0; e < 8; e++) g[e] *= laneBeta;
            PUT_LANE_SPLIT(region2, tr, tileColumn(j), g)
        }
    barrier();

    // Per 64-column block of K: P = G K (slices d <= tr), N = (diag(beta) G)^T K (slices d >= tr);
    // dK += diag(beta) P + N, dbeta += rows(P . K)
    for (uint kb = 0; kb < keyBlocks; kb++)
    {
        uint column0 = h * pc.keyDim + 64 * kb;
        [[unroll]] for (uint j = 0; j < 2; j++)
        {
            ACC p = ACC(0.0), nt = ACC(0.0);
            [[unroll]] for (uint d = 0; d < 4; d++)
            {
                FRAG_B keyTile;
                coopMatLoad(keyTile, keys.v, ((firstToken + 16 * d) * keyStride + column0 + 16 * tileColumn(j)) / 8, keyStride / 8,
                            gl_CooperativeMatrixLayoutRowMajor);
                FRAG_A aHi, aLo;
                if (d <= tr)
                {
                    LOAD_SPLIT(aHi, aLo, region1, tr, d, gl_CooperativeMatrixLayoutRowMajor);
                    MUL_EXACT_B(p, aHi, aLo, keyTile);
                }
                if (d >= tr)
                {
                    LOAD_SPLIT(aHi, aLo, region2, d, tr, gl_CooperativeMatrixLayoutColumnMajor);
                    MUL_EXACT_B(nt, aHi, aLo, keyTile);
                }
            }
            float x[8], y[8];
            laneValues(p, x);
            laneValues(nt, y);
            uint at = laneToken * keyStride + column0 + 16 * tileColumn(j) + laneColumn();
            uvec4 packed = keys.v[at / 8];
            [[unroll]] for (uint e = 0; e < 8; e++)
                betaPartial = fma(x[e], bf16ToFloat(e % 2 == 0 ? packed[e / 2] & 0xFFFFu : packed[e / 2] >> 16), betaPartial);
            F32x4Buffer target = F32x4Buffer(pc.dk);
            target.v[at / 4] += vec4(x[0], x[1], x[2], x[3]) * laneBeta + vec4(y[0], y[1], y[2], y[3]);
            target.v[at / 4 + 1] += vec4(x[4], x[5], x[6], x[7]) * laneBeta + vec4(y[4], y[5], y[6], y[7]);
        }
    }

    // dbeta: the two lanes of a row, then the two subgroups of a tile row
    betaPartial += subgroupShuffleXor(betaPartial, 1);
    if (gl_SubgroupInvocationID % 2 == 0) rowSums[16 * tr + laneRow()][gl_SubgroupID % 2] = betaPartial;
    barrier();
    if (id < CHUNK) F32Buffer(pc.dbeta).v[(firstToken + id) * pc.heads + h] = rowSums[id][0] + rowSums[id][1];
}
