// Tensor-core products for chunk_tiles.glsl (COOPMAT; VK_KHR_cooperative_matrix, bf16 x bf16 -> f32
// at 16 x 16 x 16, the shape the host checked the device lists). Same contracts as the portable
// products: each call adds A B (64 x 64, depth `depth`) to the invocation's acc tile.
// Precision: an f32 operand x is split into two bf16 parts, hi = bf16(x) and lo = bf16(x - hi), and
//   A B ~ A_hi B_hi + A_hi B_lo + A_lo B_hi       (f32 accumulation)
// leaves out only A_lo B_lo, about 2^-16 of |A| |B|: close to the f32 products, not bf16 ones.
// With SPLIT false the lo parts are dropped (every operand rounded to bf16, one multiply), the
// precision of flash-linear-attention's kernels.
// Operands that are exactly bf16 (bf16 tensors read without a row scale) have lo = 0, and their
// terms are skipped; for bf16 q, k, v most products take one or two multiplies instead of three.
// The 64 x 64 result is 16 tiles of 16 x 16; subgroup s owns tiles s TILES_PER_SUBGROUP .. (the
// host sets TILES_PER_SUBGROUP = 16 subgroup size / GROUP, so the workgroup covers all 16). Depth goes in
// steps of 32 staged through shared memory: A as [m][k] (row-major, k contiguous) or [k][m]
// (column-major), B as [k][n] or [n][k], whichever keeps the global reads of the view contiguous;
// rows are padded by 8 elements against bank conflicts. Storage is uvec4 (8 bf16), as the
// coopmat loads take offsets and strides in units of the array's element. After the depth loop the
// same shared array holds the f32 result (64 x 64), which goes from there into acc.

layout(constant_id = 0) const uint TILES_PER_SUBGROUP = 2;
layout(constant_id = 1) const bool SPLIT = true;   // false: f32 operands rounded to bf16 (one multiply)

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

layout(buffer_reference, std430, buffer_reference_align = 16) buffer U32x4Buffer { uvec4 v[]; };

// Whether runs of 8 elements of the view along its contiguous axis (columns when alongColumns)
// can be read as 16-byte vectors: stride 1 on that axis, the run starts (origin, other stride) and
// the extent multiples of 8, so a run is wholly inside or wholly outside the view.
bool vectorRuns(MatrixView m, bool alongColumns)
{
    uint unit = alongColumns ? m.columnStride : m.rowStride, other = alongColumns ? m.rowStride : m.columnStride;
    uint extent = alongColumns ? m.columns : m.rows;
    return unit == 1 && m.origin % 8 == 0 && other % 8 == 0 && extent % 8 == 0;
}

// Stages 8 consecutive operand values from (r, c) along columns (alongColumns) or rows into uvec4
// `slot` of the stage at hiBase. Vector path: one or two 16-byte loads (bf16 read as is when no
// row scale applies); otherwise 8 scalar reads.
void stageRun(uint hiBase, uint slot, uint source, MatrixView m, uint r, uint c, bool alongColumns, bool vector)
{
    float x[8];
    if (vector)
    {
        if (r >= m.rows || c >= m.columns)
        {
            cmShared[hiBase + slot] = uvec4(0);
            cmShared[hiBase + CM_STAGE_VECS + slot] = uvec4(0);
            return;
        }
        uint first = m.origin + r * m.rowStride + c * m.columnStride;
        if (m.dtype == DTYPE_F32)
        {
            vec4 p = F32x4Buffer(m.base).v[first / 4], q = F32x4Buffer(m.base).v[first / 4 + 1];
            x = float[8](p.x, p.y, p.z, p.w, q.x, q.y, q.z, q.w);
        }
        else
        {
            uvec4 bits = U32x4Buffer(m.base).v[first / 8];
            if (m.dtype == DTYPE_BF16 && m.rowScale == 0ul)
            {
                cmShared[hiBase + slot] = bits;
                cmShared[hiBase + CM_STAGE_VECS + slot] = uvec4(0);
                return;
            }
            [[unroll]] for (uint e = 0; e < 4; e++)
            {
                uint w = bits[e];
                x[2 * e] = m.dtype == DTYPE_BF16 ? bf16ToFloat(w & 0xFFFFu) : f16ToFloat(w & 0xFFFFu);
                x[2 * e + 1] = m.dtype == DTYPE_BF16 ? bf16ToFloat(w >> 16) : f16ToFloat(w >> 16);
            }
        }
        if (m.rowScale != 0ul)
        {
            if (alongColumns)
            {
                float scale = loadAs(m.rowScale, m.scaleDtype, m.scaleOrigin + r * m.scaleStride);
                [[unroll]] for (uint e = 0; e < 8; e++) x[e] *= scale;
            }
            else
                [[unroll]] for (uint e = 0; e < 8; e++) x[e] *= loadAs(m.rowScale, m.scaleDtype, m.scaleOrigin + (r + e) * m.scaleStride);
        }
    }
    else
        [[unroll]] for (uint e = 0; e < 8; e++) x[e] = alongColumns ? operand(source, m, r, c + e) : operand(source, m, r + e, c);
    stagePut(hiBase, slot, x);
}

// 64 x 32 = 256 runs of 8, run id = invocation + q GROUP for q < 256 / GROUP. Runs go along the
// stage's contiguous axis, which is the view's contiguous axis (aRowMajor, bRowMajor).
void stageA(uint source, MatrixView a, bool rowMajor, bool vector, uint m0, uint k0)
{
    [[unroll]] for (uint q = 0; q < 256 / GROUP; q++)
    {
        uint id = gl_LocalInvocationID.x + q * GROUP;
        if (rowMajor) stageRun(CM_A_HI, (id / 4) * CM_ROW32 + id % 4, source, a, m0 + id / 4, k0 + 8 * (id % 4), true, vector);
        else stageRun(CM_A_HI, (id / 8) * CM_ROW64 + id % 8, source, a, m0 + 8 * (id % 8), k0 + id / 8, false, vector);
    }
}

void stageB(uint source, MatrixView b, bool rowMajor, bool vector, uint k0, uint n0)
{
    [[unroll]] for (uint q = 0; q < 256 / GROUP; q++)
    {
        uint id = gl_LocalInvocationID.x + q * GROUP;
        if (rowMajor) stageRun(CM_B_HI, (id / 8) * CM_ROW64 + id % 8, source, b, k0 + id / 8, n0 + 8 * (id % 8), true, vector);
        else stageRun(CM_B_HI, (id / 4) * CM_ROW32 + id % 4, source, b, k0 + 8 * (id % 4), n0 + id / 4, false, vector);
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
    bool aRow = aRowMajor(sourceA, a), bRow = bRowMajor(sourceB, b);
    bool aExact = !SPLIT || exactBf16(sourceA, a), bExact = !SPLIT || exactBf16(sourceB, b);
    bool aVector = sourceA == SOURCE_VIEW && vectorRuns(a, aRow), bVector = sourceB == SOURCE_VIEW && vectorRuns(b, bRow);
    coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator> tiles[TILES_PER_SUBGROUP];
    [[unroll]] for (uint t = 0; t < TILES_PER_SUBGROUP; t++) tiles[t] = coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>(0.0);
    for (uint k0 = 0; k0 < depth; k0 += CM_K)
    {
        barrier();
        stageA(sourceA, a, aRow, aVector, m0, k0);
        stageB(sourceB, b, bRow, bVector, k0, n0);
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
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++)
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
