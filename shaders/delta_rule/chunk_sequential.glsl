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

// rows[i][c] = M[t0 + i][c] * factor for i < count, else 0; M token-major [B, T, H, width] of dtype.
void loadRowsA(uint64_t base, uint dtype, uint origin, uint rowStride, uint count, uint width, float factor)
{
    for (uint e = gl_LocalInvocationID.x; e < SUB * width; e += groupSize())
    {
        uint i = e / width, c = e % width;
        rowsA[i][c] = i < count ? factor * loadAs(base, dtype, origin + i * rowStride + c) : 0.0;
    }
}

void loadRowsB(uint64_t base, uint dtype, uint origin, uint rowStride, uint count, uint width, float factor)
{
    for (uint e = gl_LocalInvocationID.x; e < SUB * width; e += groupSize())
    {
        uint i = e / width, c = e % width;
        rowsB[i][c] = i < count ? factor * loadAs(base, dtype, origin + i * rowStride + c) : 0.0;
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
