// Tensor-core products for chunk_tiles.glsl (COOPMAT; VK_KHR_cooperative_matrix, bf16 x bf16 -> f32
// at 16 x 16 x 16, the shape the host checked the device lists). Same contracts as the portable
// products: each call adds A B (64 x 64, depth `depth`) to the invocation's acc tile.
// Precision: an f32 operand x is split into two bf16 parts, hi = bf16(x) and lo = bf16(x - hi), and
//   A B ~ A_hi B_hi + A_hi B_lo + A_lo B_hi       (f32 accumulation)
// leaves out only A_lo B_lo, about 2^-16 of |A| |B|: close to the f32 products, not bf16 ones.
// Operands that are exactly bf16 (bf16 tensors read without a row scale) have lo = 0, and their
// terms are skipped; for bf16 q, k, v most products take one or two multiplies instead of three.
// The 64 x 64 result is 16 tiles of 16 x 16; subgroup s owns tiles s TILES_PER_SUBGROUP .. (the
// host sets TILES_PER_SUBGROUP = subgroup size / 16, so 256 invocations cover all 16). Depth goes in
// steps of 32 staged through shared memory: A as [m][k] (row-major, k contiguous) or [k][m]
// (column-major), B as [k][n] or [n][k], whichever keeps the global reads of the view contiguous;
// rows are padded by 8 elements against bank conflicts. Storage is uvec4 (8 bf16), as the
// coopmat loads take offsets and strides in units of the array's element. After the depth loop the
// same shared array holds the f32 result (64 x 64), which goes from there into acc.

layout(constant_id = 0) const uint TILES_PER_SUBGROUP = 2;

#define CM_K 32
#define CM_ROW32 5              // uvec4 per padded row of 32 elements (40)
#define CM_ROW64 9              // uvec4 per padded row of 64 elements (72)
#define CM_STAGE_VECS 320       // max(64 CM_ROW32, 32 CM_ROW64)
#define CM_A_HI 0
#define CM_A_LO CM_STAGE_VECS
#define CM_B_HI (2 * CM_STAGE_VECS)
#define CM_B_LO (3 * CM_STAGE_VECS)

// Stages during the depth loop, then the result (CHUNK * CHUNK / 4 = 1024 vec4 <= 1280).
shared uvec4 cmShared[4 * CM_STAGE_VECS];

// Where an operand comes from: a MatrixView, the shared `square`, or square transposed.
#define SOURCE_VIEW 0
#define SOURCE_SQUARE 1
#define SOURCE_SQUARE_T 2

float operand(uint source, MatrixView m, uint r, uint c)
{
    if (source == SOURCE_VIEW) return fetch(m, r, c);
    return source == SOURCE_SQUARE ? square[r][c] : square[c][r];
}

// Whether every value of the operand is a bf16 number (its lo part is zero).
bool exactBf16(uint source, MatrixView m) { return source == SOURCE_VIEW && m.dtype == DTYPE_BF16 && m.rowScale == 0ul; }

// The hi and lo bf16 parts of 8 values, packed two per uint.
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

// Stores 8 values at uvec4 `slot` of the stage at `hiBase` (hi part) and `hiBase + CM_STAGE_VECS` (lo).
void stagePut(uint hiBase, uint slot, float x[8])
{
    uvec4 hi, lo;
    splitBf16(x, hi, lo);
    cmShared[hiBase + slot] = hi;
    cmShared[hiBase + CM_STAGE_VECS + slot] = lo;
}

// A stage is row-major ([m][k]) when A's k axis is contiguous in memory (or A is square), else
// column-major ([k][m]). B is row-major ([k][n]) when its n axis is contiguous (or B is square).
bool aRowMajor(uint source, MatrixView a) { return source == SOURCE_SQUARE || (source == SOURCE_VIEW && a.columnStride == 1); }
bool bRowMajor(uint source, MatrixView b) { return source != SOURCE_VIEW || b.columnStride == 1; }

// One uvec4 (8 elements) per invocation: 64 x 32 = 256 x 8.
void stageA(uint source, MatrixView a, bool rowMajor, uint m0, uint k0)
{
    uint id = gl_LocalInvocationID.x;
    float x[8];
    if (rowMajor)
    {
        uint m = id / 4, k = 8 * (id % 4);
        [[unroll]] for (uint e = 0; e < 8; e++) x[e] = operand(source, a, m0 + m, k0 + k + e);
        stagePut(CM_A_HI, m * CM_ROW32 + id % 4, x);
    }
    else
    {
        uint k = id / 8, m = 8 * (id % 8);
        [[unroll]] for (uint e = 0; e < 8; e++) x[e] = operand(source, a, m0 + m + e, k0 + k);
        stagePut(CM_A_HI, k * CM_ROW64 + id % 8, x);
    }
}

void stageB(uint source, MatrixView b, bool rowMajor, uint k0, uint n0)
{
    uint id = gl_LocalInvocationID.x;
    float x[8];
    if (rowMajor)
    {
        uint k = id / 8, n = 8 * (id % 8);
        [[unroll]] for (uint e = 0; e < 8; e++) x[e] = operand(source, b, k0 + k, n0 + n + e);
        stagePut(CM_B_HI, k * CM_ROW64 + id % 8, x);
    }
    else
    {
        uint n = id / 4, k = 8 * (id % 4);
        [[unroll]] for (uint e = 0; e < 8; e++) x[e] = operand(source, b, k0 + k + e, n0 + n);
        stagePut(CM_B_HI, n * CM_ROW32 + id % 4, x);
    }
}

void loadA(out coopmat<bfloat16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> fragment, uint offset, bool rowMajor)
{
    if (rowMajor) coopMatLoad(fragment, cmShared, offset, CM_ROW32, gl_CooperativeMatrixLayoutRowMajor);
    else coopMatLoad(fragment, cmShared, offset, CM_ROW64, gl_CooperativeMatrixLayoutColumnMajor);
}

void loadB(out coopmat<bfloat16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB> fragment, uint offset, bool rowMajor)
{
    if (rowMajor) coopMatLoad(fragment, cmShared, offset, CM_ROW64, gl_CooperativeMatrixLayoutRowMajor);
    else coopMatLoad(fragment, cmShared, offset, CM_ROW32, gl_CooperativeMatrixLayoutColumnMajor);
}

// acc += A[m0 .., 0 .. depth) B[0 .. depth, n0 ..). Called in uniform control flow.
void product(uint sourceA, MatrixView a, uint sourceB, MatrixView b, uint m0, uint n0, uint depth)
{
    bool aRow = aRowMajor(sourceA, a), bRow = bRowMajor(sourceB, b), aExact = exactBf16(sourceA, a), bExact = exactBf16(sourceB, b);
    coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator> tiles[TILES_PER_SUBGROUP];
    [[unroll]] for (uint t = 0; t < TILES_PER_SUBGROUP; t++) tiles[t] = coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>(0.0);
    for (uint k0 = 0; k0 < depth; k0 += CM_K)
    {
        barrier();
        stageA(sourceA, a, aRow, m0, k0);
        stageB(sourceB, b, bRow, k0, n0);
        barrier();
        [[unroll]] for (uint kk = 0; kk < CM_K; kk += 16)
            [[unroll]] for (uint t = 0; t < TILES_PER_SUBGROUP; t++)
            {
                uint tile = gl_SubgroupID * TILES_PER_SUBGROUP + t, tr = tile / 4, tc = tile % 4;
                uint offsetA = aRow ? 16 * tr * CM_ROW32 + kk / 8 : kk * CM_ROW64 + 2 * tr;
                uint offsetB = bRow ? kk * CM_ROW64 + 2 * tc : 16 * tc * CM_ROW32 + kk / 8;
                coopmat<bfloat16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> fragA, fragALo;
                coopmat<bfloat16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB> fragB, fragBLo;
                loadA(fragA, CM_A_HI + offsetA, aRow);
                loadB(fragB, CM_B_HI + offsetB, bRow);
                if (!bExact)
                {
                    loadB(fragBLo, CM_B_LO + offsetB, bRow);
                    tiles[t] = coopMatMulAdd(fragA, fragBLo, tiles[t]);
                }
                if (!aExact)
                {
                    loadA(fragALo, CM_A_LO + offsetA, aRow);
                    tiles[t] = coopMatMulAdd(fragALo, fragB, tiles[t]);
                }
                tiles[t] = coopMatMulAdd(fragA, fragB, tiles[t]);
            }
    }
    barrier();
    [[unroll]] for (uint t = 0; t < TILES_PER_SUBGROUP; t++)
    {
        uint tile = gl_SubgroupID * TILES_PER_SUBGROUP + t, tr = tile / 4, tc = tile % 4;
        coopMatStore(tiles[t], cmShared, 16 * tr * (CHUNK / 4) + 4 * tc, CHUNK / 4, gl_CooperativeMatrixLayoutRowMajor);
    }
    barrier();
    uint tx = gl_LocalInvocationID.x % 16;
    [[unroll]] for (uint i = 0; i < 4; i++)
    {
        vec4 r = uintBitsToFloat(cmShared[accRow(i) * (CHUNK / 4) + tx]);
        [[unroll]] for (uint j = 0; j < 4; j++) acc[i][j] += r[j];
    }
}

void multiply(MatrixView a, MatrixView b, uint m0, uint n0, uint depth)
{
    product(SOURCE_VIEW, a, SOURCE_VIEW, b, m0, n0, depth);
}

void multiplySquareLeft(bool transpose, MatrixView b, uint n0)
{
    product(transpose ? SOURCE_SQUARE_T : SOURCE_SQUARE, b, SOURCE_VIEW, b, 0, n0, CHUNK);
}

void multiplySquareRight(MatrixView a, uint m0)
{
    product(SOURCE_VIEW, a, SOURCE_SQUARE, a, m0, 0, CHUNK);
}
