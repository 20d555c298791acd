// Shared-memory tile products for the chunked delta rule (one chunk of C = 64 tokens per
// workgroup). A workgroup of 256 invocations owns a 64 x 64 f32 result tile in registers: invocation
// (tx, ty) = (id % 16, id / 16) holds rows 4 ty + i and columns 4 tx + j, i, j < 4.
//   acc += A B   with A (64 x K) and B (K x 64) streamed through shared memory 16 values of K at a time
// (tileA[k][m], tileB[k][n]: both k-major and stored as vec4, so each step of the inner loop is
// two 16-byte shared reads for 16 FMAs).
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
#define GROUP 256

layout(local_size_x = GROUP) in;

shared float square[CHUNK][CHUNK + 1];   // +1: column reads of a row-major matrix avoid bank conflicts

float acc[4][4];

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
    [[unroll]] for (uint i = 0; i < 4; i++) [[unroll]] for (uint j = 0; j < 4; j++) acc[i][j] = 0.0;
}

void scaleAcc(float s)
{
    [[unroll]] for (uint i = 0; i < 4; i++) [[unroll]] for (uint j = 0; j < 4; j++) acc[i][j] *= s;
}

uint accRow(uint i) { return 4 * (gl_LocalInvocationID.x / 16) + i; }
uint accColumn(uint j) { return 4 * (gl_LocalInvocationID.x % 16) + j; }

#ifdef COOPMAT
#include "chunk_tiles_coopmat.glsl"
#else
shared vec4 tileA[KSTEP][CHUNK / 4];
shared vec4 tileB[KSTEP][CHUNK / 4];

// tileA[k][m] = A(m0 + m, k0 + k). Consecutive invocations take consecutive addresses of the view's
// contiguous axis, so global loads coalesce whichever way the view is strided.
void loadA(MatrixView a, uint m0, uint k0)
{
    bool kContiguous = a.columnStride == 1;
    for (uint e = gl_LocalInvocationID.x; e < KSTEP * CHUNK; e += GROUP)
    {
        uint m = kContiguous ? e / KSTEP : e % CHUNK, k = kContiguous ? e % KSTEP : e / CHUNK;
        tileA[k][m / 4][m % 4] = fetch(a, m0 + m, k0 + k);
    }
}

// tileB[k][n] = B(k0 + k, n0 + n).
void loadB(MatrixView b, uint k0, uint n0)
{
    bool kContiguous = b.rowStride == 1;
    for (uint e = gl_LocalInvocationID.x; e < KSTEP * CHUNK; e += GROUP)
    {
        uint n = kContiguous ? e / KSTEP : e % CHUNK, k = kContiguous ? e % KSTEP : e / CHUNK;
        tileB[k][n / 4][n % 4] = fetch(b, k0 + k, n0 + n);
    }
}

// tileA[k][m] = square[m][k0 + k] (or square[k0 + k][m] when transposed).
void loadASquare(bool transpose, uint k0)
{
    for (uint e = gl_LocalInvocationID.x; e < KSTEP * CHUNK; e += GROUP)
    {
        uint m = e % CHUNK, k = e / CHUNK;
        tileA[k][m / 4][m % 4] = transpose ? square[k0 + k][m] : square[m][k0 + k];
    }
}

// tileB[k][n] = square[k0 + k][n].
void loadBSquare(uint k0)
{
    for (uint e = gl_LocalInvocationID.x; e < KSTEP * CHUNK; e += GROUP)
    {
        uint n = e % CHUNK, k = e / CHUNK;
        tileB[k][n / 4][n % 4] = square[k0 + k][n];
    }
}

void multiplyTiles()
{
    uint tx = gl_LocalInvocationID.x % 16, ty = gl_LocalInvocationID.x / 16;
    [[unroll]] for (uint k = 0; k < KSTEP; k++)
    {
        vec4 a = tileA[k][ty], b = tileB[k][tx];
        [[unroll]] for (uint i = 0; i < 4; i++) [[unroll]] for (uint j = 0; j < 4; j++) acc[i][j] = fma(a[i], b[j], acc[i][j]);
    }
}

// acc += A[m0 .. m0+63, 0 .. depth) B[0 .. depth, n0 .. n0+63). Called in uniform control flow;
// leaves the tiles busy (a barrier is taken before they are next written).
void multiply(MatrixView a, MatrixView b, uint m0, uint n0, uint depth)
{
    for (uint k0 = 0; k0 < depth; k0 += KSTEP)
    {
        barrier();
        loadA(a, m0, k0);
        loadB(b, k0, n0);
        barrier();
        multiplyTiles();
    }
}

// acc += square (or square^T) B[0 .. 64, n0 .. n0+63).
void multiplySquareLeft(bool transpose, MatrixView b, uint n0)
{
    for (uint k0 = 0; k0 < CHUNK; k0 += KSTEP)
    {
        barrier();
        loadASquare(transpose, k0);
        loadB(b, k0, n0);
        barrier();
        multiplyTiles();
    }
}

// acc += A[m0 .., 0 .. 64) square.
void multiplySquareRight(MatrixView a, uint m0)
{
    for (uint k0 = 0; k0 < CHUNK; k0 += KSTEP)
    {
        barrier();
        loadA(a, m0, k0);
        loadBSquare(k0);
        barrier();
        multiplyTiles();
    }
}

#endif

// square[r][c] = acc for the tile's elements; mode 0: all, 1: c <= r (causal, diagonal kept),
// 2: c < r (strictly lower); the rest is zero. Ends with a barrier, so square is ready to read.
void accToSquare(uint mode, float factor)
{
    barrier();
    [[unroll]] for (uint i = 0; i < 4; i++)
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
