// Blocked inverse of the chunk's unit lower triangular matrix, in place in `square` (chunk_tiles.glsl).
//   in:  square = L, strictly lower triangular (zero on and above the diagonal)
//   out: square = X = (I + L)^-1, unit lower triangular (ones on the diagonal, zeros above)
// With 16 x 16 blocks A_ij, X_ij of A = I + L and X (i, j < 4; A_ii = I + L_ii, A_ij = L_ij for j < i,
// zero for j > i), X is formed in two stages:
// 1. X_ii = A_ii^-1, the four diagonal blocks at once, each by forward substitution over its 16 rows.
// 2. Block row by block row, i = 1, 2, 3, once every X_kj with k < i is known: (A X)_ij = 0 for j < i
//    reads A_ii X_ij + sum_{k=j}^{i-1} A_ik X_kj = 0 (X_kj = 0 for k < j, A_ik = 0 for k > i), so
//        X_ij = -X_ii P_ij,   P_ij = sum_{k=j}^{i-1} L_ik X_kj,
//    for all j < i of the row at once.
// That is 16 + 2 * 3 barriers where a row-by-row substitution over 64 rows takes two per row (1 + 2 * 3
// in the tensor-core builds with subgroups of 32, whose stage 1 runs in one subgroup per block).
// The step loops stay rolled ([[dont_unroll]]): a barrier dominates each step, and unrolled they
// made lavapipe's first compile of the kernel about 10 s slower (a noisy measurement on 2 cores).
// Rows and columns past the sequence end have L = 0 (beta = 0, K = 0): every step keeps X the
// identity there, so a partial chunk needs no special case. f32 throughout; nothing depends on the
// subgroup size. Shared memory: 3 KiB here on top of chunk_tiles.glsl.

#define BLOCK 16
#define BLOCKS (CHUNK / BLOCK)

shared float blockProducts[BLOCKS - 1][BLOCK][BLOCK];   // P_ij[r][c] of the current block row i, j < i

// Stage 1. Invocation id works on diagonal block d = id / (GROUP / 4) (rows and columns d0 .. d0 + 15
// of square), row r of it, INVERSE_COLUMNS columns from c0 (256 invocations: 4 columns each, r =
// (id % 64) / 4, c0 = 4 (id % 4); 128: 8 columns each). Column-oriented forward substitution of
// A_dd X_dd = I: row r of X_dd is e_r - sum_{s<r} L_dd[r][s] X_dd[s], so
//   invariant (before step s): y = row r of X_dd for r <= s; for r > s, y = e_r - sum_{s'<s} L_dd[r][s'] X_dd[s'].
// Step s publishes row s (now final) and subtracts L_dd[r][s] X_dd[s] from every row r > s.
// (X_dd[s][c] = 0 for c > s and 1 at c = s, so y keeps the zeros above the diagonal and the 1 on it.)
#define INVERSE_COLUMNS (4 * 256 / GROUP)

#ifdef COOPMAT
// Stage 1 in subgroups of 32 (the tensor-core builds; their subgroup size is pinned, and the host
// runs them only where subgroups hold at least 16): subgroup d < 4 inverts block d alone, with no
// workgroup barrier between the 16 steps (subgroup_substitution.glsl). L_dd is read from square,
// which keeps it until the block's X_dd is written at the end.
#include "subgroup_substitution.glsl"

#define SQUARE_BLOCK_L(r, s) square[d0 + (r)][d0 + (s)]
void invertDiagonalBlocksInSubgroups()
{
    uint lane = gl_SubgroupInvocationID, c = lane % 16, r0 = lane / 16;
    for (uint d = gl_SubgroupID; d < BLOCKS; d += gl_NumSubgroups)
    {
        uint d0 = BLOCK * d;
        float y[8];
        SUBGROUP_FORWARD_SUBSTITUTION(y, c, r0, SQUARE_BLOCK_L)
        [[unroll]] for (uint m = 0; m < 8; m++) square[d0 + r0 + 2 * m][d0 + c] = y[m];
    }
    barrier();
}
#endif

void invertDiagonalBlocks()
{
#ifdef COOPMAT
    if (gl_SubgroupSize == 32)
    {
        invertDiagonalBlocksInSubgroups();
        return;
    }
#endif
    uint id = gl_LocalInvocationID.x, within = id % (GROUP / 4), groupsPerRow = BLOCK / INVERSE_COLUMNS;
    uint d0 = BLOCK * (id / (GROUP / 4)), r = within / groupsPerRow, c0 = INVERSE_COLUMNS * (within % groupsPerRow);
    float y[INVERSE_COLUMNS];
    [[unroll]] for (uint j = 0; j < INVERSE_COLUMNS; j++) y[j] = c0 + j == r ? 1.0 : 0.0;
    [[dont_unroll]] for (uint s = 0; s < BLOCK; s++)
    {
        if (r == s) [[unroll]] for (uint j = 0; j < INVERSE_COLUMNS; j++) square[d0 + s][d0 + c0 + j] = y[j];
        // L_dd[r][s], read before this step's barrier: row r of square is rewritten at step r > s,
        // after it.
        float l = s < r ? square[d0 + r][d0 + s] : 0.0;
        barrier();
        // reads row s, which nobody writes again; the next step writes row s + 1
        if (r > s) [[unroll]] for (uint j = 0; j < INVERSE_COLUMNS; j++) y[j] = fma(-l, square[d0 + s][d0 + c0 + j], y[j]);
    }
}

// Stage 2. Invocation id computes element (r, c) = ((id + e GROUP) / 16, id % 16), e < 256 / GROUP,
// of every block X_ij, j < i, of block row i.
#define OFF_DIAGONAL_ROWS (256 / GROUP)

void solveOffDiagonalBlocks()
{
    uint id = gl_LocalInvocationID.x, c = id % BLOCK;
    [[dont_unroll]] for (uint i = 1; i < BLOCKS; i++)
    {
        // p[e][j] = P_ij[r][c] = sum_{k=j}^{i-1} sum_m L_ik[r][m] X_kj[m][c]; one read of L_ik[r][m]
        // serves every j <= k. Row `row` of square still holds L here; rows above it hold X.
        float p[OFF_DIAGONAL_ROWS][BLOCKS - 1];
        [[unroll]] for (uint e = 0; e < OFF_DIAGONAL_ROWS; e++)
        {
            uint row = BLOCK * i + (id + e * GROUP) / BLOCK;
            [[unroll]] for (uint j = 0; j < BLOCKS - 1; j++) p[e][j] = 0.0;
            for (uint k = 0; k < i; k++)
                for (uint m = 0; m < BLOCK; m++)
                {
                    float l = square[row][BLOCK * k + m];
                    [[unroll]] for (uint j = 0; j < BLOCKS - 1; j++)
                        if (j <= k) p[e][j] = fma(l, square[BLOCK * k + m][BLOCK * j + c], p[e][j]);
                }
        }
        [[unroll]] for (uint e = 0; e < OFF_DIAGONAL_ROWS; e++)
            [[unroll]] for (uint j = 0; j < BLOCKS - 1; j++) if (j < i) blockProducts[j][(id + e * GROUP) / BLOCK][c] = p[e][j];
        barrier();
        // X_ij[r][c] = -sum_m X_ii[r][m] P_ij[m][c] (X_ii[r][m] = 0 for m > r, 1 at m = r); it
        // overwrites L_ij, which every invocation has read before the barrier above.
        [[unroll]] for (uint e = 0; e < OFF_DIAGONAL_ROWS; e++)
        {
            uint row = BLOCK * i + (id + e * GROUP) / BLOCK;
            float x[BLOCKS - 1];
            [[unroll]] for (uint j = 0; j < BLOCKS - 1; j++) x[j] = 0.0;
            for (uint m = 0; m < BLOCK; m++)
            {
                float xii = square[row][BLOCK * i + m];
                [[unroll]] for (uint j = 0; j < BLOCKS - 1; j++) if (j < i) x[j] = fma(xii, blockProducts[j][m][c], x[j]);
            }
            [[unroll]] for (uint j = 0; j < BLOCKS - 1; j++) if (j < i) square[row][BLOCK * j + c] = -x[j];
        }
        barrier();   // block row i of X is complete before row i + 1 reads it and rewrites blockProducts
    }
}

// square: L -> (I + L)^-1 as above. Called by the whole workgroup in uniform control flow, after the
// barrier that published L; ends with a barrier, so X is ready to read.
void invertUnitLowerSquare()
{
    invertDiagonalBlocks();
    solveOffDiagonalBlocks();
}
