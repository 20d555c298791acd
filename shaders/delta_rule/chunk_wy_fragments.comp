#version 460
// Chunked delta rule, stage 1 (chunk_wy.comp's math) with every product on tensor-core fragments
// (chunk_fragments.glsl): one workgroup of 8 subgroups per chunk of 64 tokens, x: chunk, y: b H + h.
//   L = strictly_lower(diag(beta) K K^T),  X = (I + L)^-1,  W = X diag(beta) K,  U = X diag(beta) V
// X is formed on the 16 x 16 tiles by recursive doubling: with L_ij, X_ij the tiles (i, j < 4) and
// A = I + L block lower triangular,
//   X_ii = (I + L_ii)^-1                                   forward substitution, f32, in one subgroup
//   X_i,i-1 = -X_ii L_i,i-1 X_i-1,i-1      (i = 1, 3)      the two 32 x 32 diagonal blocks' inverses
//   X_BA = -X_BB L_BA X_AA                                 the 64 x 64 inverse from them (A: tiles 0, 1;
//                                                          B: tiles 2, 3), through Y = L_BA X_AA
// (for a block lower triangular [[P, 0], [Q, R]] the inverse is [[P^-1, 0], [-R^-1 Q P^-1, R^-1]]).
// Every tile of X is computed and stored (f32, where the backward keeps X) by the subgroup that owns
// it (tiles (s / 2, 2 (s % 2) + {0, 1}) of subgroup s: the diagonal tiles by subgroups 0, 2, 5, 7, the
// level-1 tiles by 2 and 7 (each owns the diagonal tile beside its own), the level-2 ones by 4 and 6).
// K and V (bf16, exact in one part) are copied into shared memory, 64-column blocks at a time, with
// 16-byte reads; L, Y and X enter the products as hi and lo bf16 parts in region1 (the diagonal tiles'
// L stays f32 in their owners' scratch tiles). Preconditions the host checks
// (VulkanBackend.DeltaRuleFragmentStagesFit): T a multiple of 64, Dk and Dv 64 or 128, bf16 keys and
// values, subgroups of 32. Same push constants, outputs and workgroups as chunk_wy.comp, and
// optionally, at Dk = 64, P' = scale (Q K^T ⊙ M) for the state pass that forms the outputs
// (FUSED_OUTPUT), from a copy of Q beside K's.
// GATED=1 (chunk_wy_fragments_gated; VulkanBackend.DeltaRuleGatedUsesWyFragments): the gated rule's
// stage 1 (chunk_wy.comp's GATED build, chunk_decay.glsl), f32 intermediates, no P':
//   L = strictly_lower(diag(beta) (K K^T ⊙ Gamma)),  W = X diag(beta gamma) K,  U = X diag(beta) V
// Gamma multiplies L's elements where the mask keeps them; each lane keeps its f32 runs of X diag(beta)
// so that region1 holds X diag(beta gamma) for W and then X diag(beta) for U, never a quotient.
// Shared memory: region1 L, then X diag(beta) (hi, lo); region2 K's blocks (one per plane), then V's;
// the scratch tiles; beta (GATED: and the decays, 512 bytes).
//! variant chunk_wy_fragments -O0
//! variant chunk_wy_fragments_gated -DGATED=1 -O0
#extension GL_GOOGLE_include_directive : require
#include "chunk_fragments.glsl"
#ifndef GATED
#define GATED 0
#endif
#if GATED
#include "chunk_decay.glsl"
#endif

shared float betas[CHUNK];

layout(push_constant) uniform Push
{
    uint64_t k;
    uint64_t v;
    uint64_t beta;
    uint64_t w;         // out (bf16 where COMPACT: fragment_types.glsl)
    uint64_t u;         // out
    uint64_t x;         // out, 0: not kept (bf16 where COMPACT)
    uint t;
    uint heads;
    uint dk;
    uint dv;
    uint betaDtype;
    uint64_t q;         // read when pPrime is given
    uint64_t pPrime;    // out, 0: not formed (Dk = 64 only); P' = scale (Q K^T ⊙ M) as bf16 hi and lo planes [B H chunks, 2, 64, 64]
    float scale;
#if GATED
    uint64_t alpha;     // f32 [B, T, H]
#endif
} pc;

// Copies `count` (1 or 2) consecutive 64-column blocks of a token-major bf16 tensor, from column
// column0, into region2: block i into plane i.
#define COPY_COLUMN_BLOCKS(SOURCE, count, firstToken, stride, column0) \
    [[unroll]] for (uint q = 0; q < 2 * CHUNK * 8 / 256; q++) \
    { \
        uint e = gl_LocalInvocationID.x + 256 * q, plane = e / (CHUNK * 8), r = (e / 8) % CHUNK; \
        if (plane < (count)) region2[plane * PLANE + r * ROW + e % 8] = SOURCE.v[(((firstToken) + r) * (stride) + (column0) + 64 * plane) / 8 + e % 8]; \
    }

// X_dd = (I + L_dd)^-1 for the subgroup's diagonal tile, whose strictly lower L_dd (f32) is in the
// subgroup's scratch tile (subgroup_substitution.glsl); returns X_dd and leaves it in the scratch.
#include "subgroup_substitution.glsl"
#define SCRATCH_L(r, s) uintBitsToFloat(scratch[base + (r) * SCRATCH_ROW + (s) / 4][(s) % 4])
ACC invertDiagonalTile()
{
    uint base = gl_SubgroupID * SCRATCH_TILE, lane = gl_SubgroupInvocationID, c = lane % 16, r0 = lane / 16;
    float y[8];
    SUBGROUP_FORWARD_SUBSTITUTION(y, c, r0, SCRATCH_L)
    subgroupBarrier();   // every lane has read L_dd
    [[unroll]] for (uint m = 0; m < 8; m++) scratch[base + (r0 + 2 * m) * SCRATCH_ROW + c / 4][c % 4] = floatBitsToUint(y[m]);
    subgroupMemoryBarrierShared();
    subgroupBarrier();
    ACC inverse;
    coopMatLoad(inverse, scratch, base, SCRATCH_ROW, gl_CooperativeMatrixLayoutRowMajor);
    return inverse;
}

// c += A B for tiles A = (ar, ac) and B = (br, bc) of region1, both split: the inverse's products
// keep about f32 precision whether or not the kernel rounds its other operands (SPLIT_OPERANDS).
#define MUL_REGION1(c, ar, ac, br, bc) \
    { \
        FRAG_A aHi, aLo; \
        FRAG_B bHi, bLo; \
        LOAD_TILE_PARTS(true, aHi, aLo, region1, ar, ac, gl_CooperativeMatrixLayoutRowMajor); \
        LOAD_TILE_PARTS(true, bHi, bLo, region1, br, bc, gl_CooperativeMatrixLayoutRowMajor); \
        MUL_SPLIT_PARTS(true, c, aHi, aLo, bHi, bLo); \
    }

void main()
{
    uint n = gl_WorkGroupID.x, bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads;
    uint t0 = n * CHUNK, chunks = pc.t / CHUNK, tr = tileRow(), id = gl_LocalInvocationID.x;
    uint keyStride = pc.heads * pc.dk, valueStride = pc.heads * pc.dv;   // between consecutive tokens
    uint keyBlocks = pc.dk / 64, valueBlocks = pc.dv / 64, firstToken = b * pc.t + t0;
    Words4Buffer keys = Words4Buffer(pc.k), values = Words4Buffer(pc.v);

    if (id < CHUNK) betas[id] = loadAs(pc.beta, pc.betaDtype, (firstToken + id) * pc.heads + h);
#if GATED
    loadLogDecays(pc.alpha, firstToken * pc.heads + h, pc.heads, CHUNK);   // T is a multiple of the chunk
#endif

    // K's blocks into region2's planes; with P' wanted (Dk = 64 only), K into the hi plane and Q into the lo one.
    bool scoresWanted = pc.pPrime != 0ul;
    if (scoresWanted) { COPY_BLOCKS_TO_REGION2(keys, Words4Buffer(pc.q), firstToken, keyStride, h * pc.dk) }
    else { COPY_COLUMN_BLOCKS(keys, keyBlocks, firstToken, keyStride, h * pc.dk) }
    barrier();
    float laneBeta = betas[16 * tr + laneRow()];

    // Each tile of X, once formed (f32), goes out to where the backward keeps X and into region1 as
    // parts; the subgroups keep none in registers: 68 registers per invocation against 85, with no
    // measurable change in time (bench/results/2026-12-06-h100-run79.txt).
    uint inverseOrigin = (bh * chunks + n) * CHUNK * CHUNK;
#define KEEP_X(tile, tc) \
    if (pc.x != 0ul) \
    { \
        ACC keptTile = tile; \
        STORE_INTERMEDIATE(COMPACT, keptTile, pc.x, inverseOrigin + 16 * tr * CHUNK + 16 * (tc), CHUNK) \
    }

    // L's tiles on and below the diagonal: beta_i (k_i . k_j) for j < i. Off the diagonal into region1
    // as parts; on it, the owner inverts its tile right away.
    [[unroll]] for (uint j = 0; j < 2; j++)
    {
        uint tc = tileColumn(j);
        if (tc > tr)
        {
            KEEP_X(ACC(0.0), tc)   // X is lower triangular
            continue;
        }
        if (scoresWanted)
        {
            // For the state pass that forms the outputs itself (chunk_state_fragments.comp, FUSED_OUTPUT):
            // P' = scale (Q K^T ⊙ M), M causal with the diagonal, stored as its hi and lo parts, the A
            // operand that pass reads (tiles above the diagonal are never read and not written).
            ACC scores = ACC(0.0);
            [[unroll]] for (uint d = 0; d < 4; d++)
            {
                FRAG_A query;
                FRAG_B keyT;   // K^T's tile (d, tc): a column-major load of K's tile (tc, d)
                coopMatLoad(query, region2, PLANE + 16 * tr * ROW + 2 * d, ROW, gl_CooperativeMatrixLayoutRowMajor);
                coopMatLoad(keyT, region2, 16 * tc * ROW + 2 * d, ROW, gl_CooperativeMatrixLayoutColumnMajor);
                scores = coopMatMulAdd(query, keyT, scores);
            }
            float x[8];
            laneValues(scores, x);
            [[unroll]] for (uint e = 0; e < 8; e++) x[e] = tc < tr || laneColumn() + e <= laneRow() ? pc.scale * x[e] : 0.0;
            uvec4 hiPart, loPart;
            splitBf16(x, hiPart, loPart);
            uint at = (bh * chunks + n) * 2 * CHUNK * 8 + (16 * tr + laneRow()) * 8 + (16 * tc + laneColumn()) / 8;   // uvec4 of 8 bf16
            Words4Buffer(pc.pPrime).v[at] = hiPart;
            if (SPLIT_OPERANDS) Words4Buffer(pc.pPrime).v[at + CHUNK * 8] = loPart;   // the lo plane
        }
        ACC gram = ACC(0.0);
        for (uint kb = 0; kb < keyBlocks; kb++)
            [[unroll]] for (uint d = 0; d < 4; d++)
            {
                FRAG_A rowsI;
                FRAG_B rowsJ;   // K^T's tile (d, tc): a column-major load of K's tile (tc, d)
                coopMatLoad(rowsI, region2, kb * PLANE + 16 * tr * ROW + 2 * d, ROW, gl_CooperativeMatrixLayoutRowMajor);
                coopMatLoad(rowsJ, region2, kb * PLANE + 16 * tc * ROW + 2 * d, ROW, gl_CooperativeMatrixLayoutColumnMajor);
                gram = coopMatMulAdd(rowsI, rowsJ, gram);
            }
        float l[8];
        laneValues(gram, l);
#if GATED
        uint row = 16 * tr + laneRow(), column0 = 16 * tc + laneColumn();
        [[unroll]] for (uint e = 0; e < 8; e++) l[e] = column0 + e < row ? laneBeta * l[e] * decayBetween(row, column0 + e) : 0.0;
#else
        [[unroll]] for (uint e = 0; e < 8; e++) l[e] = tc < tr || laneColumn() + e < laneRow() ? laneBeta * l[e] : 0.0;
#endif
        if (tc < tr) PUT_LANE_PARTS(true, region1, tr, tc, l)
        else
        {
            uint at = gl_SubgroupID * SCRATCH_TILE + laneRow() * SCRATCH_ROW + laneColumn() / 4;
            scratch[at] = floatBitsToUint(vec4(l[0], l[1], l[2], l[3]));
            scratch[at + 1] = floatBitsToUint(vec4(l[4], l[5], l[6], l[7]));
            subgroupMemoryBarrierShared();
            subgroupBarrier();
            ACC inverse = invertDiagonalTile();
            KEEP_X(inverse, tc)
            STORE_TILE_PARTS(true, inverse, region1, tr, tc)
        }
    }
    barrier();

    // Level 1, by the owners of tiles (1, 0) and (3, 2) (who own (1, 1) and (3, 3) too):
    // M = L_i,i-1 X_i-1,i-1 replaces L_i,i-1 (read by nobody else), then X_i,i-1 = -X_ii M replaces M.
    [[unroll]] for (uint j = 0; j < 2; j++)
        if (tr % 2 == 1 && tileColumn(j) + 1 == tr)
        {
            ACC m = ACC(0.0);
            MUL_REGION1(m, tr, tr - 1, tr - 1, tr - 1)
            subgroupBarrier();   // every lane has read L_i,i-1
            STORE_TILE_PARTS(true, m, region1, tr, tr - 1)
            subgroupMemoryBarrierShared();
            subgroupBarrier();
            ACC product = ACC(0.0);
            MUL_REGION1(product, tr, tr, tr, tr - 1)
            ACC x = product * -1.0;
            KEEP_X(x, tr - 1)
            subgroupBarrier();   // every lane has read M
            STORE_TILE_PARTS(true, x, region1, tr, tr - 1)
        }
    barrier();

    // Level 2, by the owners of tiles (2, 0 .. 1) and (3, 0 .. 1): Y_ic = sum_{k = c}^{1} L_ik X_kc replaces
    // L_ic (read by its owner only), then X_ic = -sum_{k = 2}^{i} X_ik Y_kc.
    bool level2 = tr >= 2 && gl_SubgroupID % 2 == 0;   // tile columns 0 and 1
    ACC y[2];
    if (level2)
    {
        [[unroll]] for (uint j = 0; j < 2; j++)
        {
            y[j] = ACC(0.0);
            [[unroll]] for (uint k = j; k < 2; k++) MUL_REGION1(y[j], tr, k, k, j)
        }
        subgroupBarrier();   // every lane has read L_i0 and L_i1
        [[unroll]] for (uint j = 0; j < 2; j++) STORE_TILE_PARTS(true, y[j], region1, tr, j)
    }
    barrier();
    ACC level2Tiles[2];   // X_i0, X_i1: region1's tiles hold Y until every product has read them
    if (level2)
        [[unroll]] for (uint j = 0; j < 2; j++)
        {
            ACC product = ACC(0.0);
            [[unroll]] for (uint k = 2; k < 4; k++)
                if (k <= tr) MUL_REGION1(product, tr, k, k, j)
            level2Tiles[j] = product * -1.0;
            KEEP_X(level2Tiles[j], j)
        }
    barrier();   // region1's X and Y are read: it takes X diag(beta)

    // X diag(beta) into region1 as parts, each lane rewriting its own run of the subgroup's tiles: from
    // X's parts there (x ~ hi + lo to about 2^-16 relative), or from the level-2 tiles' f32 values.
    // GATED: X diag(beta gamma) for W, the runs of X diag(beta) kept for U.
#if GATED
    float betaRuns[2][8];
#endif
    [[unroll]] for (uint j = 0; j < 2; j++)
    {
        uint tc = tileColumn(j);
        if (tc > tr) continue;
        float x[8];
        if (level2) laneValues(level2Tiles[j], x);
        else
        {
            uint slot = (16 * tr + laneRow()) * ROW + 2 * tc + laneColumn() / 8;
            uvec4 hi = region1[slot], lo = region1[PLANE + slot];
            [[unroll]] for (uint e = 0; e < 8; e++)
            {
                uint shift = 16 * (e % 2);
                x[e] = bf16ToFloat((hi[e / 2] >> shift) & 0xFFFFu) + bf16ToFloat((lo[e / 2] >> shift) & 0xFFFFu);
            }
        }
        [[unroll]] for (uint e = 0; e < 8; e++) x[e] *= betas[16 * tc + laneColumn() + e];
#if GATED
        betaRuns[j] = x;
        [[unroll]] for (uint e = 0; e < 8; e++) x[e] *= decayTo(16 * tc + laneColumn() + e);
#endif
        PUT_LANE_SPLIT(region1, tr, tc, x)
    }
    barrier();

    // W = (X diag(beta)) K from K's blocks in region2, then U = (X diag(beta)) V from V's.
    for (uint pass = 0; pass < 2; pass++)
    {
        bool key = pass == 0;
        uint blocks = key ? keyBlocks : valueBlocks, stride = key ? keyStride : valueStride;
        uint column0 = key ? h * pc.dk : h * pc.dv;
        if (!key)
        {
            barrier();   // W's products are done reading K
#if GATED
            // region1 takes X diag(beta) back for U
            [[unroll]] for (uint j = 0; j < 2; j++)
                if (tileColumn(j) <= tr) PUT_LANE_SPLIT(region1, tr, tileColumn(j), betaRuns[j])
#endif
            COPY_COLUMN_BLOCKS(values, valueBlocks, firstToken, valueStride, column0)
            barrier();
        }
        uint64_t result = key ? pc.w : pc.u;   // W bf16 where COMPACT, U where COMPACT_SUMMANDS (VulkanBackend.DeltaRuleCompactU)
        for (uint block = 0; block < blocks; block++)
            [[unroll]] for (uint j = 0; j < 2; j++)
            {
                uint tc = tileColumn(j);
                ACC tile = ACC(0.0);
                [[unroll]] for (uint d = 0; d < 4; d++)
                    if (d <= tr)
                    {
                        FRAG_A xHi, xLo;
                        FRAG_B operand;
                        LOAD_TILE_SPLIT(xHi, xLo, region1, tr, d, gl_CooperativeMatrixLayoutRowMajor);
                        coopMatLoad(operand, region2, block * PLANE + 16 * d * ROW + 2 * tc, ROW, gl_CooperativeMatrixLayoutRowMajor);
                        MUL_EXACT_B(tile, xHi, xLo, operand);
                    }
                STORE_RESULT(key ? COMPACT : COMPACT_SUMMANDS, tile, result, (firstToken + 16 * tr) * stride + column0 + 64 * block + 16 * tc, stride)   // the scratch tiles are free here
            }
    }
}
