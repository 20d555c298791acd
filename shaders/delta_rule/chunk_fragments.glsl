// Shared pieces of the parallel chunk stages on tensor-core fragments (chunk_wy_fragments.comp,
// chunk_output_fragments.comp, chunk_wy_backward_fragments.comp, chunk_grad_qk_fragments.comp): one workgroup of 8 subgroups of 32 per chunk of 64 tokens (and
// whatever else the stage splits over); subgroup s owns the 16 x 16 result tiles (tr, tc) with
// tr = s / 2 and tc = 2 (s % 2) + {0, 1} of every 64 x 64 result, held as f32 accumulator fragments.
// Products are 16 x 16 x 16 bf16 fragment multiplies with f32 accumulation. bf16 tensors enter as
// fragments read straight from memory; every f32 operand enters as two bf16 parts, hi = bf16(x),
// lo = bf16(x - hi),
//   x y ~ x_hi y_hi + x_hi y_lo + x_lo y_hi      (three multiplies; two when y is exact)
// or, with SPLIT_OPERANDS false (fragment_types.glsl), as hi alone (one multiply),
// staged in one of two shared regions of 64 x 64 (hi plane, then lo plane; row-major, rows padded
// by 8 bf16 against bank conflicts). Per-element work on a result (masks, row scalings, row dot
// products) goes through a per-subgroup f32 scratch tile, after which each lane holds 8 consecutive
// values of one row of the tile (laneRow, laneColumn).
#include "fragment_types.glsl"
#extension GL_KHR_shader_subgroup_shuffle : require
#include "dtype.glsl"

#define CHUNK 64
#define ROW 9                 // uvec4 per padded row of 64 bf16
#define PLANE (CHUNK * ROW)   // the lo plane's offset in a region
#define SCRATCH_ROW 5         // uvec4 (4 f32) per padded row of a 16 x 16 f32 scratch tile
#define SCRATCH_TILE (16 * SCRATCH_ROW)

layout(local_size_x = 256) in;

shared uvec4 region1[2 * PLANE];        // hi plane, then lo plane
shared uvec4 region2[2 * PLANE];
// One 16 x 16 f32 tile per subgroup (f32 bits in uvec4), or, between workgroup barriers, a 64 x 64
// bf16 block with rows of ROW uvec4 (COPY_BLOCK_TO_SCRATCH).
shared uvec4 scratch[8 * SCRATCH_TILE];

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
    vec4 p = uintBitsToFloat(scratch[at]), q = uintBitsToFloat(scratch[at + 1]);
    x = float[8](p.x, p.y, p.z, p.w, q.x, q.y, q.z, q.w);
    subgroupBarrier();   // every lane has read before the scratch is written again
}

// The tile whose lane values (laneValues' layout) are x, through this subgroup's scratch tile.
ACC fromLaneValues(float x[8])
{
    uint base = gl_SubgroupID * SCRATCH_TILE, at = base + laneRow() * SCRATCH_ROW + laneColumn() / 4;
    scratch[at] = floatBitsToUint(vec4(x[0], x[1], x[2], x[3]));
    scratch[at + 1] = floatBitsToUint(vec4(x[4], x[5], x[6], x[7]));
    subgroupMemoryBarrierShared();
    subgroupBarrier();
    ACC m;
    coopMatLoad(m, scratch, base, SCRATCH_ROW, gl_CooperativeMatrixLayoutRowMajor);
    subgroupBarrier();   // every lane has loaded before the scratch is written again
    return m;
}

#include "split_bf16.glsl"

// How the stages write result tiles to global memory (specialisation constant 9,
// VulkanBackend.DeltaRuleLaneStores). 0: coopMatStore (STORE_INTERMEDIATE: bf16 tiles as ACC_BF16
// fragments). Bit 1: bf16 tiles through the subgroup's scratch tile (laneValues), each lane writing
// its 8 consecutive values of one row, rounded to nearest, as one 16-byte word; bit 2: f32 tiles the
// same way, two 16-byte words a lane (the tensor must start on 16 bytes). Same values either way.
layout(constant_id = 9) const uint LANE_STORES = 0;
#define STORE_RESULT(compact, m, address, offset, stride) \
    if ((compact) ? (LANE_STORES & 1u) != 0u : (LANE_STORES & 2u) != 0u) \
    { \
        float run_[8]; \
        laneValues(m, run_); \
        uint at_ = (offset) + laneRow() * (stride) + laneColumn(); \
        if (compact) Words4Buffer(address).v[at_ / 8] = packNearestBf16(run_); \
        else \
        { \
            F32x4Buffer(address).v[at_ / 4] = vec4(run_[0], run_[1], run_[2], run_[3]); \
            F32x4Buffer(address).v[at_ / 4 + 1] = vec4(run_[4], run_[5], run_[6], run_[7]); \
        } \
    } \
    else STORE_INTERMEDIATE(compact, m, address, offset, stride)

// Writes the lane's 8 values of tile (tr, tc) as hi and (where split) lo parts into REGION.
#define PUT_LANE_PARTS(split, REGION, tr, tc, x) \
    { \
        uvec4 hiPart, loPart; \
        splitBf16(x, hiPart, loPart); \
        uint slot = (16 * (tr) + laneRow()) * ROW + 2 * (tc) + laneColumn() / 8; \
        REGION[slot] = hiPart; \
        if (split) REGION[PLANE + slot] = loPart; \
    }
#define PUT_LANE_SPLIT(REGION, tr, tc, x) PUT_LANE_PARTS(SPLIT_OPERANDS, REGION, tr, tc, x)

// Specialisation constant 11 (VulkanBackend.DeltaRuleRegisterScores; rounded operands only): how the
// causal scores P' = scale (S ⊙ M) (the output stage, the values gradient) and dP' (the q, k gradients)
// reach their region. false: each tile goes through the subgroup's scratch (laneValues), is masked
// and scaled per element and written as bf16 runs (PUT_LANE_SPLIT). true: STAGE_CAUSAL_TILE scales
// and rounds the tile as a fragment and stores it with one coopMatStore; only the diagonal tile is
// then masked, each lane clearing the elements of its run above the diagonal in the stored copy.
// Same bits either way: scale x is the same f32 product, rounded to nearest bf16 by both (nearestBf16,
// floatToBf16), and a masked element is +0 (bits 0) in both.
layout(constant_id = 11) const bool REGISTER_SCORES = false;
#define SCORES_IN_REGISTERS (REGISTER_SCORES && !SPLIT_OPERANDS)

// scale (m ⊙ M) as tile (tr, tc) of REGION's hi plane, rounded to nearest bf16, for tc <= tr (M keeps
// column <= row of the 64 x 64 chunk; the caller leaves the tiles above the diagonal alone, no product
// reads them). Rounded operands only (SCORES_IN_REGISTERS).
#define STAGE_CAUSAL_TILE(REGION, m, scale, tr, tc) \
    { \
        coopMatStore(ACC_BF16(nearestBf16((m) * (scale))), REGION, 16 * (tr) * ROW + 2 * (tc), ROW, gl_CooperativeMatrixLayoutRowMajor); \
        if ((tc) == (tr)) \
        { \
            subgroupMemoryBarrierShared(); \
            subgroupBarrier(); \
            if (laneColumn() + 7 > laneRow()) \
            { \
                uint slot_ = (16 * (tr) + laneRow()) * ROW + 2 * (tc) + laneColumn() / 8; \
                uvec4 run_ = REGION[slot_]; \
                [[unroll]] for (uint i_ = 0; i_ < 4; i_++) \
                { \
                    uint column_ = laneColumn() + 2 * i_; \
                    if (column_ > laneRow()) run_[i_] = 0u; \
                    else if (column_ + 1 > laneRow()) run_[i_] &= 0xFFFFu; \
                } \
                REGION[slot_] = run_; \
            } \
        } \
    }

// f32 tile m as hi and (where split) lo parts at tile (tr, tc) of REGION (region1 or region2).
#define STORE_TILE_PARTS(split, m, REGION, tr, tc) SPLIT_STORE_PARTS(split, m, REGION, PLANE, 16 * (tr) * ROW + 2 * (tc), ROW)
#define STORE_TILE_SPLIT(m, REGION, tr, tc) STORE_TILE_PARTS(SPLIT_OPERANDS, m, REGION, tr, tc)

// The 64 x 64 block of an intermediate at `address` whose element (0, 0) is element `origin` (rows
// `stride` elements apart), read ahead of its staging: compact (bf16, fragment_types.glsl's COMPACT)
// as this invocation's two 16-byte pieces `raw` (uvec4[2]), else f32 as this subgroup's result tiles
// (tileRow(), tileColumn(j)) into `tiles` (ACC[2]). PUT_BLOCK then stages it into REGION: the pieces
// as they are, or the tiles as parts (STORE_TILE_SPLIT); both give the same hi plane.
#define FETCH_BLOCK(compact, raw, tiles, address, origin, stride) \
    if (compact) { LOAD_RAW_BLOCK(raw, address, origin, stride); } \
    else \
    { \
        [[unroll]] for (uint j = 0; j < 2; j++) \
            coopMatLoad(tiles[j], F32Buffer(address).v, (origin) + 16 * tileRow() * (stride) + 16 * tileColumn(j), stride, gl_CooperativeMatrixLayoutRowMajor); \
    }
#define PUT_BLOCK(compact, raw, tiles, REGION) \
    if (compact) { PUT_RAW_BLOCK(raw, REGION, ROW); } \
    else { [[unroll]] for (uint j = 0; j < 2; j++) STORE_TILE_SPLIT(tiles[j], REGION, tileRow(), tileColumn(j)) }

// With the operands rounded (SPLIT_OPERANDS false) a region's lo plane goes unused, so it can hold a
// second block: PUT_BLOCK_LO stages a fetched block there (hi part alone), and MULTIPLY_PLANES
// multiplies blocks at plane offsets A_PLANE of REGION_A and B_PLANE of REGION_B (0 or PLANE).
#define PUT_BLOCK_LO(compact, raw, tiles, REGION) \
    if (compact) { PUT_RAW_BLOCK_AT(raw, REGION, PLANE, ROW); } \
    else { [[unroll]] for (uint j = 0; j < 2; j++) SPLIT_STORE_PARTS(false, tiles[j], REGION, 0, PLANE + 16 * tileRow() * ROW + 2 * tileColumn(j), ROW) }
// c += A B, A = tile row tr of the block at A_PLANE of REGION_A, B = tile column tc of the block at
// B_PLANE of REGION_B (rounded operands only: one multiply per 16-deep slice).
#define MULTIPLY_PLANES(c, REGION_A, A_PLANE, REGION_B, B_PLANE, tr, tc) \
    [[unroll]] for (uint d = 0; d < 4; d++) \
    { \
        FRAG_A a; \
        FRAG_B b; \
        coopMatLoad(a, REGION_A, (A_PLANE) + 16 * (tr) * ROW + 2 * d, ROW, gl_CooperativeMatrixLayoutRowMajor); \
        coopMatLoad(b, REGION_B, (B_PLANE) + 16 * d * ROW + 2 * (tc), ROW, gl_CooperativeMatrixLayoutRowMajor); \
        c = coopMatMulAdd(a, b, c); \
    }

// hi and (where split) lo fragments of tile (tr, tc) of REGION, row-major, or transposed (the tile
// (tc, tr) of the transpose) through a column-major load.
#define LOAD_TILE_PARTS(split, hi, lo, REGION, tr, tc, LAYOUT) LOAD_SPLIT_PARTS(split, hi, lo, REGION, PLANE, 16 * (tr) * ROW + 2 * (tc), ROW, LAYOUT)
#define LOAD_TILE_SPLIT(hi, lo, REGION, tr, tc, LAYOUT) LOAD_TILE_PARTS(SPLIT_OPERANDS, hi, lo, REGION, tr, tc, LAYOUT)

// Copies the 64 x 64 bf16 blocks of two token-major tensors (rows firstToken .., `stride` elements
// apart, columns column0 ..) into region2: FIRST into its hi plane, SECOND into its lo plane, each row
// as 8 uvec4 with 16-byte coalesced reads. Fragments that many products read are faster loaded from
// such a copy than straight from the tensors (bench/results/2026-12-06-h100-run70.txt and run71).
#define COPY_BLOCKS_TO_REGION2(FIRST, SECOND, firstToken, stride, column0) \
    [[unroll]] for (uint q = 0; q < CHUNK * 8 / 256; q++) \
    { \
        uint e = gl_LocalInvocationID.x + 256 * q, r = e / 8, at = (((firstToken) + r) * (stride) + (column0)) / 8 + e % 8; \
        region2[r * ROW + e % 8] = FIRST.v[at]; \
        region2[PLANE + r * ROW + e % 8] = SECOND.v[at]; \
    }

// Copies the 64 x 64 bf16 block of a token-major tensor (rows firstToken .., `stride` elements apart,
// columns column0 ..) into DEST from uvec4 `base` on, rows of ROW uvec4: into the scratch tiles, whose
// 10 KiB hold it (the workgroup barriers around the copy's use keep it apart from laneValues), or into
// a region's free lo plane.
#define COPY_BLOCK_INTO(DEST, base, SOURCE, firstToken, stride, column0) \
    [[unroll]] for (uint q = 0; q < CHUNK * 8 / 256; q++) \
    { \
        uint e = gl_LocalInvocationID.x + 256 * q, r = e / 8; \
        DEST[(base) + r * ROW + e % 8] = SOURCE.v[(((firstToken) + r) * (stride) + (column0)) / 8 + e % 8]; \
    }
#define COPY_BLOCK_TO_SCRATCH(SOURCE, firstToken, stride, column0) COPY_BLOCK_INTO(scratch, 0, SOURCE, firstToken, stride, column0)
