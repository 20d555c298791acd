// The sequential stages of the chunked delta rule (forward state pass, backward gradient pass):
// one workgroup per (slice of SLICE state rows, batch x head) walks the chunks in order, keeping its
// SLICE x Dk slice of the state (or of its gradient) in shared memory. Rows of S are independent
// given the chunk's K, W (or Q), so slices of Dv run in parallel. A chunk is taken SUB tokens at a
// time: the products that read the chunk-start state all use that state, and the state's update is
// summed in registers over the sub-blocks and applied after the chunk's last one.
// Invocation layout: SUB x SLICE invocations; for the per-token products invocation id is
// (token i = id / SLICE, state row v = id % SLICE); for the update it owns the slice elements
// e = id + r SUB SLICE (row e / Dk, column e % Dk), at most DKMAX / SUB of them.
#include "buffers.glsl"
#include "dtype.glsl"

#define CHUNK 64
#define SUB 16
#define DKMAX 128
#define OWNED (DKMAX / SUB)

layout(local_size_x_id = 0) in;                 // SUB * SLICE
layout(constant_id = 1) const uint SLICE = 16;  // state rows per workgroup, at most 16

shared float slice[16][DKMAX + 1];      // +1: the per-token dot products read columns of it
shared float rowsA[SUB][DKMAX];
shared float rowsB[SUB][DKMAX];

uint groupSize() { return SUB * SLICE; }

// A sub-block's rows are fetched into registers one sub-block ahead, so their global loads are in
// flight while the current one computes: element e = id + r SUB SLICE of the SUB x width block
// (row e / width, column e % width); SLICE >= 8 makes PREFETCH registers enough.
#define PREFETCH (DKMAX / 8)

// regs = factor * M[i][c] for the block's rows i < count (else 0); M's row i at origin + i rowStride.
void fetchRows(uint64_t base, uint dtype, uint origin, uint rowStride, uint count, uint width, float factor, out float regs[PREFETCH])
{
    [[unroll]] for (uint r = 0; r < PREFETCH; r++)
    {
        uint e = gl_LocalInvocationID.x + r * groupSize(), i = e / width, c = e % width;
        regs[r] = e < SUB * width && i < count ? factor * loadAs(base, dtype, origin + i * rowStride + c) : 0.0;
    }
}

void storeRowsA(float regs[PREFETCH], uint width)
{
    [[unroll]] for (uint r = 0; r < PREFETCH; r++)
    {
        uint e = gl_LocalInvocationID.x + r * groupSize();
        if (e < SUB * width) rowsA[e / width][e % width] = regs[r];
    }
}

void storeRowsB(float regs[PREFETCH], uint width)
{
    [[unroll]] for (uint r = 0; r < PREFETCH; r++)
    {
        uint e = gl_LocalInvocationID.x + r * groupSize();
        if (e < SUB * width) rowsB[e / width][e % width] = regs[r];
    }
}

// slice[v][c] += update[r] for the elements this invocation owns.
void applyUpdate(float update[OWNED], uint dk)
{
    [[unroll]] for (uint r = 0; r < OWNED; r++)
    {
        uint e = gl_LocalInvocationID.x + r * groupSize();
        if (e < SLICE * dk) slice[e / dk][e % dk] += update[r];
    }
}

// slice = rows v0 .. v0 + SLICE of a [Dv, Dk] state at 'origin' (0 address: zeros); rows past Dv are 0.
void loadSlice(uint64_t base, uint origin, uint v0, uint dv, uint dk)
{
    for (uint e = gl_LocalInvocationID.x; e < SLICE * dk; e += groupSize())
    {
        uint v = e / dk, c = e % dk;
        slice[v][c] = base != 0ul && v0 + v < dv ? F32Buffer(base).v[origin + (v0 + v) * dk + c] : 0.0;
    }
}

void storeSlice(uint64_t base, uint origin, uint v0, uint dv, uint dk)
{
    for (uint e = gl_LocalInvocationID.x; e < SLICE * dk; e += groupSize())
    {
        uint v = e / dk, c = e % dk;
        if (v0 + v < dv) F32Buffer(base).v[origin + (v0 + v) * dk + c] = slice[v][c];
    }
}

// rowsA[i] . slice[v] over dk columns, in four independent partial sums (the chain of dependent
// FMAs is the latency of the sequential pass).
float rowDot(uint i, uint v, uint dk)
{
    float s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    uint c = 0;
    for (; c + 4 <= dk; c += 4)
    {
        s0 = fma(rowsA[i][c], slice[v][c], s0);
        s1 = fma(rowsA[i][c + 1], slice[v][c + 1], s1);
        s2 = fma(rowsA[i][c + 2], slice[v][c + 2], s2);
        s3 = fma(rowsA[i][c + 3], slice[v][c + 3], s3);
    }
    for (; c < dk; c++) s0 = fma(rowsA[i][c], slice[v][c], s0);
    return (s0 + s1) + (s2 + s3);
}
