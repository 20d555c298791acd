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
// coopmat loads take offsets and strides in units of the array's element. Each step's values are
// read from global memory into registers (PendingRun) before they are converted and stored, with
// PIPELINED two steps ahead (product()). After the depth loop the same shared array holds the f32
// result (64 x 64), which goes from there into acc.
// The tensor-core variants build with -O0 (their variant lines): glslc's optimiser took 39-98 s and
// up to 9.9 GB per variant on them (docs/benchmarks.md has the command), and the driver optimises
// the SPIR-V itself. Together with the reads of both operands' runs before either stage write
// (fetchStage for A and B, then putStage) that made
// the parallel tensor-core stages faster on the H200 than the -O build that read and wrote run by
// run (B8 H16 T2048 D64 bf16: chunk_wy 409 -> 377 us, chunk_output 263 -> 224, chunk_values_grad
// 204 -> 162, chunk_grad_qk 504 -> 487; the state passes 349 -> 348 and 483 -> 456;
// bench/results/2026-12-01-h200-run37.txt and run38); the two were not measured apart.

layout(constant_id = 0) const uint TILES_PER_SUBGROUP = 2;
layout(constant_id = 1) const bool SPLIT = true;   // false: f32 operands rounded to bf16 (one multiply)
layout(constant_id = 3) const bool PIPELINED = false;   // product(): both depth steps of 64 in flight at once

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


#include "split_bf16.glsl"

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

// Whether runs of 8 elements of the view along its contiguous axis (columns when alongColumns)
// can be read as 16-byte vectors: stride 1 on that axis, the run starts (origin, other stride) and
// the extent multiples of 8, so a run is wholly inside or wholly outside the view.
bool vectorRuns(MatrixView m, bool alongColumns)
{
    uint unit = alongColumns ? m.columnStride : m.rowStride, other = alongColumns ? m.rowStride : m.columnStride;
    uint extent = alongColumns ? m.columns : m.rows;
    return unit == 1 && m.origin % 8 == 0 && other % 8 == 0 && extent % 8 == 0;
}

// A run of 8 consecutive operand values, read from global memory (or square) before the stage
// write that converts and stores it: right before it, with the other operand's runs, or with
// PIPELINED two depth steps ahead (product()). value[0..7] holds f32 values; for f16 and bf16 views read as
// vectors, value[0..3] holds the 16 bytes as they are (decoded at the stage write). scale is the
// run's row scale (1 when none). Vector runs of a scaled view go along its columns (one scale per
// run); a scaled view staged across its rows takes the scalar path, which scales each value.
struct PendingRun
{
    float value[8];
    float scale;
};

// Reads the run of 8 values from (r, c) along columns (alongColumns) or rows: one or two 16-byte
// loads on the vector path, else 8 scalar reads; zeros outside the view.
PendingRun fetchRun(uint source, MatrixView m, uint r, uint c, bool alongColumns, bool vector)
{
    PendingRun run;
    run.scale = 1.0;
    [[unroll]] for (uint e = 0; e < 8; e++) run.value[e] = 0.0;
    if (!vector)
    {
        [[unroll]] for (uint e = 0; e < 8; e++) run.value[e] = alongColumns ? operand(source, m, r, c + e) : operand(source, m, r + e, c);
        return run;
    }
    if (r >= m.rows || c >= m.columns) return run;
    uint first = m.origin + r * m.rowStride + c * m.columnStride;
    if (m.dtype == DTYPE_F32)
    {
        vec4 p = F32x4Buffer(m.base).v[first / 4], q = F32x4Buffer(m.base).v[first / 4 + 1];
        run.value = float[8](p.x, p.y, p.z, p.w, q.x, q.y, q.z, q.w);
    }
    else
    {
        uvec4 bits = Words4Buffer(m.base).v[first / 8];
        [[unroll]] for (uint e = 0; e < 4; e++) run.value[e] = uintBitsToFloat(bits[e]);
    }
    if (m.rowScale != 0ul) run.scale = loadAs(m.rowScale, m.scaleDtype, m.scaleOrigin + r * m.scaleStride);
    return run;
}

// Writes a fetched run as hi and lo bf16 parts into uvec4 `slot` of the stage at hiBase (and
// hiBase + CM_STAGE_VECS). Exact bf16 runs (vector reads of an unscaled bf16 view) go as they are.
void putRun(uint hiBase, uint slot, PendingRun run, MatrixView m, bool vector)
{
    bool packed = vector && m.dtype != DTYPE_F32;
    if (packed && m.dtype == DTYPE_BF16 && m.rowScale == 0ul)
    {
        cmShared[hiBase + slot] = uvec4(floatBitsToUint(run.value[0]), floatBitsToUint(run.value[1]), floatBitsToUint(run.value[2]), floatBitsToUint(run.value[3]));
        cmShared[hiBase + CM_STAGE_VECS + slot] = uvec4(0);
        return;
    }
    float x[8];
    if (packed)
        [[unroll]] for (uint e = 0; e < 4; e++)
        {
            uint w = floatBitsToUint(run.value[e]);
            x[2 * e] = m.dtype == DTYPE_BF16 ? bf16ToFloat(w & 0xFFFFu) : f16ToFloat(w & 0xFFFFu);
            x[2 * e + 1] = m.dtype == DTYPE_BF16 ? bf16ToFloat(w >> 16) : f16ToFloat(w >> 16);
        }
    else x = run.value;
    [[unroll]] for (uint e = 0; e < 8; e++) x[e] *= run.scale;
    stagePut(hiBase, slot, x);
}

// A stage of 64 x 32 (A) or 32 x 64 (B) values is 256 runs of 8: run id = invocation + q GROUP,
// q < CM_RUNS. Runs go along the stage's contiguous axis, which is the view's contiguous axis
// (aRowMajor, bRowMajor): along the view's columns when alongColumns, else along its rows. A line of
// the stage (a padded row) holds `perLine` runs: 4 when the contiguous axis is the 32 of depth
// (CM_ROW32), 8 when it is the 64 of the result (CM_ROW64). A takes alongColumns = aRow and
// perLine = aRow ? 4 : 8, B alongColumns = bRow and perLine = bRow ? 8 : 4; (r0, c0) is the stage's
// first element in the view.
#define CM_RUNS (256 / GROUP)

void fetchStage(out PendingRun runs[CM_RUNS], uint source, MatrixView m, bool alongColumns, uint perLine, bool vector, uint r0, uint c0)
{
    [[unroll]] for (uint q = 0; q < CM_RUNS; q++)
    {
        uint id = gl_LocalInvocationID.x + q * GROUP, line = id / perLine, within = 8 * (id % perLine);
        runs[q] = alongColumns ? fetchRun(source, m, r0 + line, c0 + within, true, vector)
                               : fetchRun(source, m, r0 + within, c0 + line, false, vector);
    }
}

void putStage(uint hiBase, PendingRun runs[CM_RUNS], MatrixView m, uint perLine, bool vector)
{
    [[unroll]] for (uint q = 0; q < CM_RUNS; q++)
    {
        uint id = gl_LocalInvocationID.x + q * GROUP;
        putRun(hiBase, (id / perLine) * (perLine == 4 ? CM_ROW32 : CM_ROW64) + id % perLine, runs[q], m, vector);
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

// tiles += the staged step's A (64 x CM_K) times B (CM_K x 64), this subgroup's tiles; inside
// product() (uses its tiles, aRow, bRow, aExact, bExact).
#define MULTIPLY_STAGE() \
    [[unroll]] for (uint kk = 0; kk < CM_K; kk += 16) \
        [[unroll]] for (uint t = 0; t < TILES_PER_SUBGROUP; t++) \
        { \
            uint tile = gl_SubgroupID * TILES_PER_SUBGROUP + t, tr = tile / 4, tc = tile % 4; \
            uint offsetA = aRow ? 16 * tr * CM_ROW32 + kk / 8 : kk * CM_ROW64 + 2 * tr; \
            uint offsetB = bRow ? kk * CM_ROW64 + 2 * tc : 16 * tc * CM_ROW32 + kk / 8; \
            coopmat<bfloat16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> fragA, fragALo; \
            coopmat<bfloat16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB> fragB, fragBLo; \
            loadA(fragA, CM_A_HI + offsetA, aRow); \
            loadB(fragB, CM_B_HI + offsetB, bRow); \
            if (!bExact) \
            { \
                loadB(fragBLo, CM_B_LO + offsetB, bRow); \
                tiles[t] = coopMatMulAdd(fragA, fragBLo, tiles[t]); \
            } \
            if (!aExact) \
            { \
                loadA(fragALo, CM_A_LO + offsetA, aRow); \
                tiles[t] = coopMatMulAdd(fragALo, fragB, tiles[t]); \
            } \
            tiles[t] = coopMatMulAdd(fragA, fragB, tiles[t]); \
        }

// acc += A[m0 .., 0 .. depth) B[0 .. depth, n0 ..). Called in uniform control flow.
void product(uint sourceA, MatrixView a, uint sourceB, MatrixView b, uint m0, uint n0, uint depth)
{
    bool aRow = aRowMajor(sourceA, a), bRow = bRowMajor(sourceB, b);
    bool aExact = !SPLIT || exactBf16(sourceA, a), bExact = !SPLIT || exactBf16(sourceB, b);
    // (runs go along columns of A when aRow, of B when bRow: a scaled view read across rows takes
    // the scalar path, fetchRun)
    bool aVector = sourceA == SOURCE_VIEW && vectorRuns(a, aRow) && (aRow || a.rowScale == 0ul);
    bool bVector = sourceB == SOURCE_VIEW && vectorRuns(b, bRow) && (bRow || b.rowScale == 0ul);
    coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator> tiles[TILES_PER_SUBGROUP];
    [[unroll]] for (uint t = 0; t < TILES_PER_SUBGROUP; t++) tiles[t] = coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>(0.0);
    uint aPerLine = aRow ? 4 : 8, bPerLine = bRow ? 8 : 4;
    // Depth steps alternate between two register sets of fetched runs (even and odd steps).
    // PIPELINED: both sets are fetched before the loop and each is refilled two steps ahead right
    // after its stage write, so a depth-64 product waits on its global reads once, not once per
    // step. Otherwise each step reads its runs between the first barrier and its stage write.
    PendingRun evenA[CM_RUNS], evenB[CM_RUNS], oddA[CM_RUNS], oddB[CM_RUNS];
#define FETCH_STEP(runsA, runsB, k) \
    fetchStage(runsA, sourceA, a, aRow, aPerLine, aVector, m0, k); \
    fetchStage(runsB, sourceB, b, bRow, bPerLine, bVector, k, n0)
    // One depth step k from its set: stage write between two barriers, then the multiplies.
#define STEP(runsA, runsB, k) \
    barrier();   /* the previous step's multiplies (or the previous product's result) are done with the stage */ \
    if (!PIPELINED) { FETCH_STEP(runsA, runsB, k); } \
    putStage(CM_A_HI, runsA, a, aPerLine, aVector); \
    putStage(CM_B_HI, runsB, b, bPerLine, bVector); \
    barrier(); \
    if (PIPELINED && k + 2 * CM_K < depth) { FETCH_STEP(runsA, runsB, k + 2 * CM_K); } \
    MULTIPLY_STAGE()
    if (PIPELINED)
    {
        FETCH_STEP(evenA, evenB, 0);
        if (CM_K < depth) { FETCH_STEP(oddA, oddB, CM_K); }
    }
    for (uint k0 = 0; k0 < depth; k0 += 2 * CM_K)
    {
        STEP(evenA, evenB, k0);
        if (k0 + CM_K < depth) { STEP(oddA, oddB, (k0 + CM_K)); }
    }
#undef STEP
#undef FETCH_STEP
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
