// Shared-memory tile products for the chunked delta rule (one chunk of C = 64 tokens per
// workgroup). A workgroup of GROUP invocations (256, or 128 where the kernel is built with
// -DGROUP=128) owns a 64 x 64 f32 result tile in registers: invocation (tx, ty) = (id % 16, id / 16)
// holds rows ACC_ROWS ty + i and columns 4 tx + j, i < ACC_ROWS = 1024 / GROUP (4 or 8), j < 4.
// The smaller workgroup does each step's work in half the invocations with the same shared memory
// and barriers, so more chunks fit an SM when registers, not shared memory, bound the workgroups.
// Only the tensor-core variants are built at 128 (the portable code is written for both sizes and
// passed the reference at 128 on lavapipe, whose compiler then took minutes per kernel).
//   acc += A B   with A (64 x K) and B (K x 64) streamed through shared memory 16 values of K at a time
// (tileA[k][m], tileB[k][n]: both k-major and stored as vec4, so each step of the inner loop is
// two 16-byte shared reads for 16 FMAs); the global loads of the next 16 are in flight meanwhile.
// Operands are strided views of global tensors (MatrixView: element (r, c) at origin + r rowStride +
// c columnStride, zero outside rows x columns, optionally each row r multiplied by a per-row scale)
// or the workgroup's 64 x 64 shared matrix `square` (plain or transposed). Nothing here depends on
// the subgroup size. IN_DTYPE (a define) is the element type of views marked `input`.
// With COOPMAT defined the products run on tensor cores instead (chunk_tiles_coopmat.glsl: same
// contracts, bf16 operands, subgroup-scope 16 x 16 x 16 matrices).
#ifdef COOPMAT
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_bfloat16 : require
#endif
#include "buffers.glsl"
#include "dtype.glsl"

#define CHUNK 64
#define KSTEP 16
#ifndef GATED
#define GATED 0             // 1: the gated rule's builds of the portable stages (chunk_decay.glsl)
#endif
#ifndef GROUP
#define GROUP 256
#endif
#define ACC_ROWS (CHUNK * CHUNK / 4 / GROUP)   // 16 columns of invocations, 4 columns each

layout(local_size_x = GROUP) in;

shared float square[CHUNK][CHUNK + 1];   // +1: column reads of a row-major matrix avoid bank conflicts

float acc[ACC_ROWS][4];

struct MatrixView
{
    uint64_t base;          // device address of the tensor
    uint dtype;             // DTYPE_F32, DTYPE_F16, DTYPE_BF16
    uint origin;            // element index of (0, 0)
    uint rowStride;
    uint columnStride;
    uint rows;              // valid rows; (r >= rows) reads 0
    uint columns;           // valid columns
    uint64_t rowScale;      // 0: none; else element r of a vector of dtype scaleDtype at scaleOrigin + r scaleStride
    uint scaleDtype;
    uint scaleOrigin;
    uint scaleStride;
};

MatrixView view(uint64_t base, uint dtype, uint origin, uint rowStride, uint columnStride, uint rows, uint columns)
{
    return MatrixView(base, dtype, origin, rowStride, columnStride, rows, columns, 0ul, DTYPE_F32, 0u, 0u);
}

MatrixView transposed(MatrixView m)
{
    return MatrixView(m.base, m.dtype, m.origin, m.columnStride, m.rowStride, m.columns, m.rows, 0ul, DTYPE_F32, 0u, 0u);
}

MatrixView scaledRows(MatrixView m, uint64_t scale, uint scaleDtype, uint scaleOrigin, uint scaleStride)
{
    m.rowScale = scale;
    m.scaleDtype = scaleDtype;
    m.scaleOrigin = scaleOrigin;
    m.scaleStride = scaleStride;
    return m;
}

float fetch(MatrixView m, uint r, uint c)
{
    if (r >= m.rows || c >= m.columns) return 0.0;
    float x = loadAs(m.base, m.dtype, m.origin + r * m.rowStride + c * m.columnStride);
    if (m.rowScale != 0ul) x *= loadAs(m.rowScale, m.scaleDtype, m.scaleOrigin + r * m.scaleStride);
    return x;
}

void clearAcc()
{
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++) acc[i][j] = 0.0;
}

void scaleAcc(float s)
{
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++) acc[i][j] *= s;
}

uint accRow(uint i) { return ACC_ROWS * (gl_LocalInvocationID.x / 16) + i; }
uint accColumn(uint j) { return 4 * (gl_LocalInvocationID.x % 16) + j; }

#ifdef COOPMAT
#include "chunk_tiles_coopmat.glsl"
#else
shared vec4 tileA[KSTEP][CHUNK / 4];
shared vec4 tileB[KSTEP][CHUNK / 4];

// One KSTEP x 64 slice of an operand is moved by the whole workgroup: invocation id moves its
// elements e = id + q GROUP, q < SHARE, element e being (k, m) = (e % KSTEP, e / KSTEP) when k is the
// view's contiguous axis, else (e / CHUNK, e % CHUNK). Consecutive invocations so take consecutive
// addresses of the contiguous axis, and global loads coalesce whichever way the view is strided.
#define SHARE (KSTEP * CHUNK / GROUP)

uvec2 sliceElement(uint q, bool kContiguous)
{
    uint e = gl_LocalInvocationID.x + q * GROUP;
    return kContiguous ? uvec2(e % KSTEP, e / KSTEP) : uvec2(e / CHUNK, e % CHUNK);
}

// Operand A of a product runs k along its columns (element (k, m) of a slice is A(m0 + m, k0 + k)),
// operand B along its rows ((k, n) is B(k0 + k, n0 + n)); isA says which one a view is.
bool kIsContiguous(MatrixView v, bool isA) { return (isA ? v.columnStride : v.rowStride) == 1; }

// part[q] = this invocation's elements (k, x) of the slice k0 .. k0 + KSTEP, x0 .. x0 + 63 of the operand.
void fetchSlice(MatrixView v, bool isA, uint k0, uint x0, out float part[SHARE])
{
    [[unroll]] for (uint q = 0; q < SHARE; q++)
    {
        uvec2 kx = sliceElement(q, kIsContiguous(v, isA));
        part[q] = isA ? fetch(v, x0 + kx.y, k0 + kx.x) : fetch(v, k0 + kx.x, x0 + kx.y);
    }
}

// tileA[k][x] (isA) or tileB[k][x] = the elements fetchSlice gave.
void storeSlice(MatrixView v, bool isA, float part[SHARE])
{
    [[unroll]] for (uint q = 0; q < SHARE; q++)
    {
        uvec2 kx = sliceElement(q, kIsContiguous(v, isA));
        if (isA) tileA[kx.x][kx.y / 4][kx.y % 4] = part[q];
        else tileB[kx.x][kx.y / 4][kx.y % 4] = part[q];
    }
}

// tileA[k][m] = square[m][k0 + k] (or square[k0 + k][m] when transposed).
void loadASquare(bool transpose, uint k0)
{
    [[unroll]] for (uint q = 0; q < SHARE; q++)
    {
        uvec2 km = sliceElement(q, false);
        tileA[km.x][km.y / 4][km.y % 4] = transpose ? square[k0 + km.x][km.y] : square[km.y][k0 + km.x];
    }
}

// tileB[k][n] = square[k0 + k][n].
void loadBSquare(uint k0)
{
    [[unroll]] for (uint q = 0; q < SHARE; q++)
    {
        uvec2 kn = sliceElement(q, false);
        tileB[kn.x][kn.y / 4][kn.y % 4] = square[k0 + kn.x][kn.y];
    }
}

void multiplyTiles()
{
    uint tx = gl_LocalInvocationID.x % 16, ty = gl_LocalInvocationID.x / 16;
    [[unroll]] for (uint k = 0; k < KSTEP; k++)
    {
        vec4 b = tileB[k][tx];
        [[unroll]] for (uint i4 = 0; i4 < ACC_ROWS / 4; i4++)
        {
            vec4 a = tileA[k][(ACC_ROWS / 4) * ty + i4];
            [[unroll]] for (uint i = 0; i < 4; i++) [[unroll]] for (uint j = 0; j < 4; j++) acc[4 * i4 + i][j] = fma(a[i], b[j], acc[4 * i4 + i][j]);
        }
    }
}

// Where an operand of streamProduct comes from.
#define FROM_VIEW 0         // the MatrixView argument
#define FROM_SQUARE 1       // square
#define FROM_SQUARE_T 2     // square^T (A only)

// acc += A[m0 .. m0+63, 0 .. depth) B[0 .. depth, n0 .. n0+63), KSTEP values of k at a time.
// Double-buffered: pass p fetches slice k0 = p KSTEP from global memory into registers (nextA,
// nextB) and then multiplies slice k0 - KSTEP out of the tiles, so the loads' latency hides behind
// that slice's FMAs; the tiles are written only between the two barriers. Operands from square are
// copied at the tile write.
void streamProduct(uint aFrom, MatrixView a, uint bFrom, MatrixView b, uint m0, uint n0, uint depth)
{
    float nextA[SHARE], nextB[SHARE];
    for (uint k0 = 0; k0 < depth + KSTEP; k0 += KSTEP)
    {
        if (k0 > 0)
        {
            barrier();   // every invocation is done reading the previous slice's tiles
            if (aFrom == FROM_VIEW) storeSlice(a, true, nextA); else loadASquare(aFrom == FROM_SQUARE_T, k0 - KSTEP);
            if (bFrom == FROM_VIEW) storeSlice(b, false, nextB); else loadBSquare(k0 - KSTEP);
            barrier();
        }
        if (k0 < depth)
        {
            if (aFrom == FROM_VIEW) fetchSlice(a, true, k0, m0, nextA);
            if (bFrom == FROM_VIEW) fetchSlice(b, false, k0, n0, nextB);
        }
        if (k0 > 0) multiplyTiles();
    }
}

// acc += A[m0 .. m0+63, 0 .. depth) B[0 .. depth, n0 .. n0+63). Called in uniform control flow;
// leaves the tiles busy (a barrier is taken before they are next written).
void multiply(MatrixView a, MatrixView b, uint m0, uint n0, uint depth)
{
    streamProduct(FROM_VIEW, a, FROM_VIEW, b, m0, n0, depth);
}

// acc += square (or square^T) B[0 .. 64, n0 .. n0+63).
void multiplySquareLeft(bool transpose, MatrixView b, uint n0)
{
    streamProduct(transpose ? FROM_SQUARE_T : FROM_SQUARE, b /* unused */, FROM_VIEW, b, 0, n0, CHUNK);
}

// acc += A[m0 .., 0 .. 64) square.
void multiplySquareRight(MatrixView a, uint m0)
{
    streamProduct(FROM_VIEW, a, FROM_SQUARE, a /* unused */, m0, 0, CHUNK);
}

#endif

// square[r][c] = acc for the tile's elements; mode 0: all, 1: c <= r (causal, diagonal kept),
// 2: c < r (strictly lower); the rest is zero. Ends with a barrier, so square is ready to read.
void accToSquare(uint mode, float factor)
{
    barrier();
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++)
        [[unroll]] for (uint j = 0; j < 4; j++)
        {
            uint r = accRow(i), c = accColumn(j);
            bool keep = mode == 0 || (mode == 1 ? c <= r : c < r);
            square[r][c] = keep ? factor * acc[i][j] : 0.0;
        }
    barrier();
}

// Layout helpers: token-major tensors [B, T, H, D] seen as a chunk's 64 x D matrix.
// Element (b, t, h, d) is at ((b T + t) H + h) D + d; rows of one (b, h) are H D apart.
uint tokenOrigin(uint b, uint t, uint h, uint heads, uint steps, uint width) { return ((b * steps + t) * heads + h) * width; }

MatrixView tokenRows(uint64_t base, uint dtype, uint b, uint t0, uint h, uint heads, uint steps, uint width)
{
    return view(base, dtype, tokenOrigin(b, t0, h, heads, steps, width), heads * width, 1u, min(uint(CHUNK), steps - t0), width);
}

#if GATED
#include "chunk_decay.glsl"
#endif
