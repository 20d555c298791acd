// Shared pieces of the state passes on accumulator fragments (chunk_state_fragments.comp,
// chunk_state_backward_fragments.comp): one workgroup of 8 subgroups of 32 per (BV state rows,
// b H + h) holding its BV x DK slice of the state (or of its gradient) as 16 x 16 f32
// accumulators; products on VK_KHR_cooperative_matrix bf16 16 x 16 x 16 fragments with f32
// accumulation. Defines before the include: DK (64 or 128), BV (32 or 64).
// SUBGROUPS=4 (the backward pass's _narrow variant, DK = 128, BV = 32): workgroups of 4 subgroups,
// 128 invocations, each holding as many tiles as a subgroup of the 8-subgroup passes at 64 rows, so
// that two independent workgroups share an SM where one 64-row workgroup holds it alone.
// f32 operands enter the products as two bf16 parts, hi = bf16(x), lo = bf16(x - hi):
//   x y ~ x_hi y_hi + x_hi y_lo + x_lo y_hi    (f32 accumulation; exact bf16 operands have lo = 0)
// the precision of chunk_tiles_coopmat.glsl's split products. The parts come from the
// cooperative-matrix component-type conversion (a bf16 accumulator, stored to shared memory and
// loaded back as an A or B fragment): one hardware conversion per element.
// Two shared regions, each holding hi and lo planes of row-major bf16 matrices whose rows are
// padded by 8 elements against bank conflicts (uvec4 units: 8 bf16 each):
//   region1: BV x DK (the state slice, read as S^T through column-major loads) or 64 x BV
//   region2: 64 x 64 (a 64-column block of a token-major f32 operand) or 64 x BV
#ifndef SUBGROUPS
#define SUBGROUPS 8
#endif
#if SUBGROUPS == 4
#define RAW_PIECES 4
#endif
#include "fragment_types.glsl"

#define CHUNK 64
#define TK (DK / 16)                 // 16-column blocks of Dk
#define TV (BV / 16)                 // 16-row blocks of the slice
#define KB (DK / 64)                 // 64-column blocks of Dk
#define STATE_TILES (TV * TK / SUBGROUPS)    // state tiles per subgroup
#define TOKEN_TILES (4 * TV / SUBGROUPS)     // 64 x BV token-major tiles per subgroup
#define BLOCK_ROW 9                  // uvec4 per padded row of 64 bf16
#define SLICE_ROW ((BV + 8) / 8)     // uvec4 per padded row of BV bf16
#define STATE_ROW ((DK + 8) / 8)     // uvec4 per padded row of DK bf16
#define REGION1_PLANE max(BV * STATE_ROW, CHUNK * SLICE_ROW)
#define REGION2_PLANE (CHUNK * BLOCK_ROW)

#if SUBGROUPS == 4
layout(local_size_x = 128) in;
#define BLOCK_TILES 4                // tiles of a 64 x 64 block per subgroup
#else
layout(local_size_x = 256) in;
#define BLOCK_TILES 2
#endif

// Timing probe (specialisation constant 1, FASTWEIGHTS_DELTA_PROBE; for experiments only, the results
// are wrong whenever it is nonzero): each bit leaves out one kind of work of the chunk loop, so the
// time that goes with it shows: 1 the global stores, 2 the next chunk's global reads (registers keep
// the first chunk's), 4 the barriers, 8 the products, 16 the stores into shared memory.
layout(constant_id = 1) const uint PROBE = 0;
#define PROBE_STORES ((PROBE & 1u) == 0u)
#define PROBE_FETCHES ((PROBE & 2u) == 0u)
#define PROBE_BARRIERS ((PROBE & 4u) == 0u)
#define PROBE_PRODUCTS ((PROBE & 8u) == 0u)
#define PROBE_STAGING ((PROBE & 16u) == 0u)
#define CHUNK_BARRIER() if (PROBE_BARRIERS) barrier()

// Specialisation constant 9 (VulkanBackend.DeltaRuleLaneStores, bit 4; bits 1 and 2 are the parallel
// stages', chunk_fragments.glsl): compact (bf16) states and token-major intermediates are written from
// the copies staged in shared memory for the products, whole rows in 16-byte words after the barrier
// that publishes them, instead of through coopMatStore of bf16 accumulator fragments. With rounded
// operands the staged hi plane holds exactly nearestBf16 of each value, which is what the fragment
// store writes, so the tensors get the same bits.
layout(constant_id = 9) const uint LANE_STORES = 0;
// The host sets the bit only for compact intermediates (which imply rounded operands). Both forms are
// spelled out: glslc 2025 emits invalid SPIR-V for a logical not of a short-circuit expression of
// specialisation constants (an OpSpecConstantOp on an OpPhi).
#define STAGED_STORES ((LANE_STORES & 4u) != 0u)
#define UNSTAGED_STORES ((LANE_STORES & 4u) == 0u)

// Copies `rows` rows of `words` uvec4 each from REGION (row r at uvec4 r * `row`) to the bf16 tensor at
// `address` (row r from element `origin` + r * `stride`; origin and stride multiples of 8), each word
// XORed with `flip` (0x80008000u negates the 8 bf16 it holds).
#define COPY_STAGED_ROWS(REGION, row, rows, words, address, origin, stride, flip) \
    for (uint e_ = gl_LocalInvocationID.x; e_ < (rows) * (words); e_ += gl_WorkGroupSize.x) \
    { \
        uint r_ = e_ / (words), c_ = e_ % (words); \
        Words4Buffer(address).v[((origin) + r_ * (stride)) / 8 + c_] = REGION[r_ * (row) + c_] ^ uvec4(flip); \
    }

// PLANES=1 (the _v64 variants at DK = 128): the regions hold the hi plane only, for rounded operands
// (SPLIT_OPERANDS false; the host takes these variants only then, VulkanBackend.FragmentRows), whose
// lo-plane accesses never run. So BV = 64 fits beside DK = 128 in 26 KiB where two planes would
// take 52 KiB, over the 48 KiB a workgroup gets on the H100.
#ifndef PLANES
#define PLANES 2
#endif
shared uvec4 region1[PLANES * REGION1_PLANE];    // hi plane, then lo plane
shared uvec4 region2[PLANES * REGION2_PLANE];

// Loads into `tile` block tile i of this subgroup (blockTileRow / blockTileColumn) of the 64-column
// block kb of a token-major f32 tensor at `address` whose chunk starts at row firstRow (b T + t0),
// with `stride` elements between rows and the head's columns from column0 (h Dk).
#define LOAD_BLOCK_TILE(tile, address, firstRow, stride, column0, kb, i) \
    coopMatLoad(tile, F32Buffer(address).v, ((firstRow) + 16 * blockTileRow(i)) * (stride) + (column0) + 64 * (kb) + 16 * blockTileColumn(i), \
                stride, gl_CooperativeMatrixLayoutRowMajor)

// W's 64-column block kb of the chunk whose rows start at firstRow, read ahead of its staging into
// region2 (both passes declare ACC wTiles[KB][BLOCK_TILES] and uvec4 wRaw[KB][RAW_PIECES], and name pc.w, keyStride
// and h): f32 W as this subgroup's two block tiles, staged as parts by SPLIT_STORE; compact W (bf16,
// COMPACT) as this invocation's two 16-byte pieces of the block (LOAD_RAW_BLOCK), copied into the
// hi plane as they are.
#define LOAD_W_BLOCK_OF(firstRow, kb) \
    if (COMPACT) \
    { \
        LOAD_RAW_BLOCK(wRaw[kb], pc.w, (firstRow) * keyStride + h * DK + 64 * (kb), keyStride); \
    } \
    else \
    { \
        [[unroll]] for (uint i = 0; i < BLOCK_TILES; i++) LOAD_BLOCK_TILE(wTiles[kb][i], pc.w, firstRow, keyStride, h * DK, kb, i); \
    }
#define STAGE_W_BLOCK(kb) \
    if (COMPACT) \
    { \
        PUT_RAW_BLOCK(wRaw[kb], region2, BLOCK_ROW); \
    } \
    else \
    { \
        [[unroll]] for (uint i = 0; i < BLOCK_TILES; i++) \
            SPLIT_STORE(wTiles[kb][i], region2, REGION2_PLANE, 16 * blockTileRow(i) * BLOCK_ROW + 2 * blockTileColumn(i), BLOCK_ROW) \
    }

// 64 x BV token-major tile j of this subgroup: token rows 16 tokenTileRow() .., slice columns 16 tokenTileColumn(j) ..
uint tokenTileRow() { return gl_SubgroupID % 4; }
#if SUBGROUPS == 4
uint tokenTileColumn(uint j) { return j; }
#else
uint tokenTileColumn(uint j) { return gl_SubgroupID / 4 + 2 * j; }
#endif
// 64-column block tile i < BLOCK_TILES of this subgroup (16 tiles of 16 x 16 per block): tile BLOCK_TILES s + i.
uint blockTileRow(uint i) { return (BLOCK_TILES * gl_SubgroupID + i) / 4; }
uint blockTileColumn(uint i) { return (BLOCK_TILES * gl_SubgroupID + i) % 4; }

