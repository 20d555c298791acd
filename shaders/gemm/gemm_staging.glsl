// Double-buffered shared-memory staging of the K steps of a 128 x 128 block of C, shared by the
// tensor-core kernels that stage their operands themselves (gemm_coopmat.comp, subgroup-scope
// fragments; gemm_coopmat2_staged.comp, workgroup-scope matrices). A K step is the BM x BK block of
// op(A) and the BK x BN block of op(B); each is copied as stored (rows of A or A^T, of B or B^T) in
// 16-byte words (uvec4 = 8 f16 or bf16), so the stored contiguous axis must be a multiple of 8 and
// start 16-byte aligned (the host checks both). Shared rows are padded by 8 elements: an odd number
// of words a row, so the 8 rows a tensor-core fragment load reads fall in different banks.
// Before including: BM, BN, BK, TRANSPOSE_A, TRANSPOSE_B, the push constants (gemm_common.glsl),
// STAGE_M, STAGE_N, STAGE_K (expressions for the problem's M, N, K) and STAGE_WHOLE_TILES (1: the
// host guarantees whole tiles, so no bounds checks).
#define PAD 8
// uvec4 units (8 elements) of the padded shared rows.
#define ROW_K ((BK + PAD) / 8)        // a row along K: 40 elements
#define ROW_MN ((BM + PAD) / 8)       // a row along M or N: 136 elements
#define TILE_VECS (BM * BK / 8)       // 512 uvec4 per operand block
#define SHARED_VECS (BM * ROW_K)      // 640: the larger of BM * ROW_K and BK * ROW_MN (544)

shared uvec4 tileA[2][SHARED_VECS];
shared uvec4 tileB[2][SHARED_VECS];

// Block coordinates of uvec4 number 'idx' of a stored [rows, cols] block with 'colVecs' vectors per
// row: (row, col) in elements, and its shared index in rows of 'rowVecs' vectors.
void slot(uint idx, uint colVecs, uint rowVecs, out uint row, out uint col, out uint sharedIndex)
{
    row = idx / colVecs;
    col = (idx % colVecs) * 8;
    sharedIndex = row * rowVecs + idx % colVecs;
}

// Word idx of op(A)'s block at (row0, k0), zero outside op(A).
uvec4 fetchA(uint base, uint row0, uint k0, uint idx, out uint sharedIndex)
{
    uint r, c;
    if (TRANSPOSE_A == 0)
    {   // stored [M, K]: block rows are m, columns k
        slot(idx, BK / 8, ROW_K, r, c, sharedIndex);
        if (STAGE_WHOLE_TILES == 0 && (row0 + r >= STAGE_M || k0 + c >= STAGE_K)) return uvec4(0);
        return Words4Buffer(pc.a).v[(base + (row0 + r) * STAGE_K + k0 + c) / 8];
    }
    // stored [K, M]: block rows are k, columns m
    slot(idx, BM / 8, ROW_MN, r, c, sharedIndex);
    if (STAGE_WHOLE_TILES == 0 && (k0 + r >= STAGE_K || row0 + c >= STAGE_M)) return uvec4(0);
    return Words4Buffer(pc.a).v[(base + (k0 + r) * STAGE_M + row0 + c) / 8];
}

// Word idx of op(B)'s block at (k0, col0), zero outside op(B).
uvec4 fetchB(uint base, uint col0, uint k0, uint idx, out uint sharedIndex)
{
    uint r, c;
    if (TRANSPOSE_B == 0)
    {   // stored [K, N]: block rows are k, columns n
        slot(idx, BN / 8, ROW_MN, r, c, sharedIndex);
        if (STAGE_WHOLE_TILES == 0 && (k0 + r >= STAGE_K || col0 + c >= STAGE_N)) return uvec4(0);
        return Words4Buffer(pc.b).v[(base + (k0 + r) * STAGE_N + col0 + c) / 8];
    }
    // stored [N, K]: block rows are n, columns k
    slot(idx, BK / 8, ROW_K, r, c, sharedIndex);
    if (STAGE_WHOLE_TILES == 0 && (col0 + r >= STAGE_N || k0 + c >= STAGE_K)) return uvec4(0);
    return Words4Buffer(pc.b).v[(base + (col0 + r) * STAGE_K + k0 + c) / 8];
}
