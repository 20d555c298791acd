// The sequential stages of the chunked delta rule (forward state pass, backward gradient pass):
// one workgroup per (slice of SLICE state rows, batch x head) walks the chunks in order, keeping its
// SLICE x Dk slice of the state S (or of its gradient) in registers. Rows of S are independent given
// the chunk's K, W (or Q), so slices of Dv run in parallel. Per chunk the pass is two register-tiled
// products, each invocation owning a 4 x 4 (or 4 x 8) tile:
//   token product  (C x SLICE, depth Dk):  e.g. U' = U - W S^T      invocation (tm, tn) owns tokens
//                  4 tm + i and state rows 4 tn + j; B operand S^T from `stateT`
//   state product  (SLICE x Dk, depth C):  e.g. S += U'^T K         invocation (vg, cg) owns state
//                  rows 4 vg + i and columns 4 cg + 64 kb + j (kb < KBLOCKS); A operand from
//                  `tokenTile` (the token product's result), B operand streamed
// Operands of the stream are staged 16 rows at a time through `stream`, and each stage's global
// loads are issued one stage ahead into registers (`staged`), so their latency hides behind the
// current stage's FMAs. Every product reads shared memory as vec4 (2 reads per 16 FMAs).
// Invariants: state rows >= Dv and columns >= Dk stay exactly zero (their operands load as zero);
// stream rows past the sequence end are zero.
#include "buffers.glsl"
#include "dtype.glsl"

#define CHUNK 64
#define KSTEP 16
#ifndef GATED
#define GATED 0             // 1: the gated rule's builds (chunk_decay.glsl)
#endif

layout(local_size_x_id = 0) in;                     // 16 SLICE4
layout(constant_id = 1) const uint SLICE4 = 8;      // state rows per workgroup / 4: 4, 8 or 16
layout(constant_id = 2) const uint KBLOCKS = 2;     // Dk rounded up to 64, / 64: 1 or 2

const uint GROUP = 16 * SLICE4;
const uint DKMAX = 64 * KBLOCKS;
const uint STREAM4 = 16 * KBLOCKS + 1;              // vec4 per stream row; +1 spreads the
                                                    // transposed stores over the banks

shared vec4 stateT[DKMAX][SLICE4];                  // stateT[c][v / 4][v % 4] = S[v][c]
shared vec4 tokenTile[CHUNK][SLICE4];               // token product result, [token][v]
shared vec4 stream[KSTEP][STREAM4];
shared vec4 streamA[KSTEP][SLICE4];                 // a staged A operand of the state product, [token][v]

// At most 16 DKMAX / GROUP = 32 values an invocation stages per step.
float staged[32];

float tokenAcc[4][4];                               // token product tile
float stateAcc[4][8];                               // state tile: [i][4 kb + j]

uint tokenRow(uint i) { return 4 * (gl_LocalInvocationID.x / SLICE4) + i; }
uint tokenColumn(uint j) { return 4 * (gl_LocalInvocationID.x % SLICE4) + j; }
uint stateRow(uint i) { return 4 * (gl_LocalInvocationID.x / 16) + i; }
uint stateColumn(uint kb, uint j) { return 4 * (gl_LocalInvocationID.x % 16) + 64 * kb + j; }

void clearTokenAcc()
{
    [[unroll]] for (uint i = 0; i < 4; i++) [[unroll]] for (uint j = 0; j < 4; j++) tokenAcc[i][j] = 0.0;
}

// Transposed stage: stream[k][m] = factor M[m][c0 + k] for the chunk's 64 rows m (zero at or past
// `count` rows and at or past `width` columns); M's row m at origin + m rowStride. Consecutive
// invocations read consecutive columns, so the global loads coalesce.
void fetchTransposed(uint64_t base, uint dtype, uint origin, uint rowStride, uint count, uint c0, uint width, float factor)
{
    [[unroll]] for (uint r = 0; r < 32; r++)
    {
        uint e = gl_LocalInvocationID.x + r * GROUP, k = e % KSTEP, m = e / KSTEP;
        if (e < KSTEP * CHUNK)
            staged[r] = m < count && c0 + k < width ? factor * loadAs(base, dtype, origin + m * rowStride + c0 + k) : 0.0;
    }
}

void storeTransposed()
{
    [[unroll]] for (uint r = 0; r < 32; r++)
    {
        uint e = gl_LocalInvocationID.x + r * GROUP, k = e % KSTEP, m = e / KSTEP;
        if (e < KSTEP * CHUNK) stream[k][m / 4][m % 4] = staged[r];
    }
}

// Row stage: stream[k][c] = factor M[k][c] for 16 rows k and DKMAX columns c (zero at or past
// `count` rows and `width` columns).
void fetchRows(uint64_t base, uint dtype, uint origin, uint rowStride, uint count, uint width, float factor)
{
    [[unroll]] for (uint r = 0; r < 32; r++)
    {
        uint e = gl_LocalInvocationID.x + r * GROUP, k = e / DKMAX, c = e % DKMAX;
        if (e < KSTEP * DKMAX)
            staged[r] = k < count && c < width ? factor * loadAs(base, dtype, origin + k * rowStride + c) : 0.0;
    }
}

void storeRows()
{
    [[unroll]] for (uint r = 0; r < 32; r++)
    {
        uint e = gl_LocalInvocationID.x + r * GROUP, k = e / DKMAX, c = e % DKMAX;
        if (e < KSTEP * DKMAX) stream[k][c / 4][c % 4] = staged[r];
    }
}

// streamA[k][v] = M[k][v0 + v] for 16 token rows of a token-major f32 tensor (zero at or past
// `count` rows and past dv); 16 SLICE / GROUP = 4 values per invocation.
float stagedA[4];

void fetchStreamA(uint64_t base, uint origin, uint rowStride, uint count, uint v0, uint dv)
{
    [[unroll]] for (uint r = 0; r < 4; r++)
    {
        uint e = gl_LocalInvocationID.x + r * GROUP, k = e / (4 * SLICE4), v = e % (4 * SLICE4);
        stagedA[r] = k < count && v0 + v < dv ? F32Buffer(base).v[origin + k * rowStride + v0 + v] : 0.0;
    }
}

void storeStreamA()
{
    [[unroll]] for (uint r = 0; r < 4; r++)
    {
        uint e = gl_LocalInvocationID.x + r * GROUP, k = e / (4 * SLICE4), v = e % (4 * SLICE4);
        streamA[k][v / 4][v % 4] = stagedA[r];
    }
}

// tokenAcc += stream^T stateT over the stage's 16 columns c0 .. c0 + 15 of Dk: the stage holds the
// A operand transposed (stream[k][token]).
void tokenProductStage(uint c0)
{
    uint tm = gl_LocalInvocationID.x / SLICE4, tn = gl_LocalInvocationID.x % SLICE4;
    [[unroll]] for (uint k = 0; k < KSTEP; k++)
    {
        vec4 a = stream[k][tm], b = stateT[c0 + k][tn];
        [[unroll]] for (uint i = 0; i < 4; i++) [[unroll]] for (uint j = 0; j < 4; j++) tokenAcc[i][j] = fma(a[i], b[j], tokenAcc[i][j]);
    }
}

// stateAcc += A^T stream over the stage's 16 tokens, with A the 16 x SLICE block of token rows
// i0 .. i0 + 15 of tokenTile times `factor` (fromStreamA false) or the staged block streamA.
void stateProductStage(uint i0, float factor, bool fromStreamA)
{
    uint vg = gl_LocalInvocationID.x / 16, cg = gl_LocalInvocationID.x % 16;
    [[unroll]] for (uint k = 0; k < KSTEP; k++)
    {
        vec4 a = fromStreamA ? streamA[k][vg] : factor * tokenTile[i0 + k][vg];
        [[unroll]] for (uint kb = 0; kb < KBLOCKS; kb++)
        {
            vec4 b = stream[k][cg + 16 * kb];
            [[unroll]] for (uint i = 0; i < 4; i++) [[unroll]] for (uint j = 0; j < 4; j++)
                stateAcc[i][4 * kb + j] = fma(a[i], b[j], stateAcc[i][4 * kb + j]);
        }
    }
}

// tokenTile = tokenAcc (rows past `count` as zero).
void tokenAccToTile(uint count)
{
    uint tn = gl_LocalInvocationID.x % SLICE4;
    [[unroll]] for (uint i = 0; i < 4; i++)
    {
        uint r = tokenRow(i);
        tokenTile[r][tn] = r < count ? vec4(tokenAcc[i][0], tokenAcc[i][1], tokenAcc[i][2], tokenAcc[i][3]) : vec4(0.0);
    }
}

// stateT = stateAcc. Callers make sure no invocation still reads stateT (a barrier since the last
// token product) and take a barrier before the next one.
void stateToShared()
{
    uint vg = gl_LocalInvocationID.x / 16;
    [[unroll]] for (uint kb = 0; kb < KBLOCKS; kb++)
        [[unroll]] for (uint j = 0; j < 4; j++)
            stateT[stateColumn(kb, j)][vg] = vec4(stateAcc[0][4 * kb + j], stateAcc[1][4 * kb + j], stateAcc[2][4 * kb + j], stateAcc[3][4 * kb + j]);
}

// stateAcc = rows v0 .. v0 + SLICE of a [Dv, Dk] state at 'origin' (0 address: zeros); rows past Dv
// and columns past Dk are 0.
void loadState(uint64_t base, uint origin, uint v0, uint dv, uint dk)
{
    [[unroll]] for (uint i = 0; i < 4; i++)
        [[unroll]] for (uint kb = 0; kb < KBLOCKS; kb++)
            [[unroll]] for (uint j = 0; j < 4; j++)
            {
                uint v = v0 + stateRow(i), c = stateColumn(kb, j);
                stateAcc[i][4 * kb + j] = base != 0ul && v < dv && c < dk ? F32Buffer(base).v[origin + v * dk + c] : 0.0;
            }
}

void storeState(uint64_t base, uint origin, uint v0, uint dv, uint dk)
{
    [[unroll]] for (uint i = 0; i < 4; i++)
        [[unroll]] for (uint kb = 0; kb < KBLOCKS; kb++)
            [[unroll]] for (uint j = 0; j < 4; j++)
            {
                uint v = v0 + stateRow(i), c = stateColumn(kb, j);
                if (v < dv && c < dk) F32Buffer(base).v[origin + v * dk + c] = stateAcc[i][4 * kb + j];
            }
}

// regs[i][j] = M[t0 + tokenRow(i)][v0 + tokenColumn(j)] of a token-major [B, T, H, Dv] f32 tensor
// (zero outside count rows and dv columns).
void loadTokenTile(uint64_t base, uint origin, uint rowStride, uint count, uint v0, uint dv, out float regs[4][4])
{
    [[unroll]] for (uint i = 0; i < 4; i++)
        [[unroll]] for (uint j = 0; j < 4; j++)
        {
            uint r = tokenRow(i), v = v0 + tokenColumn(j);
            regs[i][j] = r < count && v < dv ? F32Buffer(base).v[origin + r * rowStride + v] : 0.0;
        }
}

void storeTokenTile(uint64_t base, uint origin, uint rowStride, uint count, uint v0, uint dv, float regs[4][4])
{
    [[unroll]] for (uint i = 0; i < 4; i++)
        [[unroll]] for (uint j = 0; j < 4; j++)
        {
            uint r = tokenRow(i), v = v0 + tokenColumn(j);
            if (r < count && v < dv) F32Buffer(base).v[origin + r * rowStride + v] = regs[i][j];
        }
}

#if GATED
#include "chunk_decay.glsl"
#endif
