#version 460
// Head-wise recurrent cells, forward, FlashRNN-style: one workgroup per (head, tile of batch rows)
// loops over all T steps inside one dispatch. Invocation r < G*Dh owns row r of the head's
// recurrent matrix R (gate g = r / Dh, unit j = r % Dh) and keeps it in registers for the whole
// sequence; h_{t-1} of the batch tile sits in shared memory. Per step:
//   1. every invocation: a[b][r] = R[r] . h_{t-1}[b] + bias[r] (+ x[b, t, r] except GRU's n gate)
//   2. invocations r < Dh: the cell's pointwise math for unit r of each batch row, which writes
//      h_t to shared memory and to the output, the saved activations, and keeps c (n, m) in registers.
// Layouts and saved values as in Engine/Ops/Rnn.cs and the CPU kernel (Engine.Cpu/Rnn).
//! variant lstm_32 -DCELL=0 -DDH_MAX=32
//! variant lstm_64 -DCELL=0 -DDH_MAX=64
//! variant lstm_128 -DCELL=0 -DDH_MAX=128
//! variant gru_32 -DCELL=1 -DDH_MAX=32
//! variant gru_64 -DCELL=1 -DDH_MAX=64
//! variant gru_128 -DCELL=1 -DDH_MAX=128
//! variant slstm_32 -DCELL=2 -DDH_MAX=32
//! variant slstm_64 -DCELL=2 -DDH_MAX=64
//! variant slstm_128 -DCELL=2 -DDH_MAX=128
//! variant elman_32 -DCELL=3 -DDH_MAX=32
//! variant elman_64 -DCELL=3 -DDH_MAX=64
//! variant elman_128 -DCELL=3 -DDH_MAX=128
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "buffers.glsl"
#include "activations.glsl"
#include "cells.glsl"


layout(local_size_x_id = 0) in;   // G * Dh invocations, rounded up to a multiple of 32 (the rest idle)
// Batch rows per workgroup (1, 2, 4 or 8): the host takes smaller tiles when heads x tiles would
// leave most of the device idle (R sits in registers of every tile's workgroup alike).
layout(constant_id = 1) const uint TILE = 8;

layout(push_constant) uniform Push
{
    F32Buffer x;        // [B, T, G*H*Dh]
    F32Buffer r;        // [H, G*Dh, Dh]
    F32Buffer bias;     // [G*H*Dh] or 0
    F32Buffer y;        // [B, T, H*Dh]
    F32Buffer saved;    // [B, T, SAVED*H*Dh] or 0
    F32Buffer h0;       // [B, H*Dh] or 0; likewise c0, n0, m0
    F32Buffer c0;
    F32Buffer n0;
    F32Buffer m0;
    F32Buffer hT;       // final states or 0
    F32Buffer cT;
    F32Buffer nT;
    F32Buffer mT;
    uint batch;
    uint t;
    uint heads;
    uint dh;
} pc;

shared float hs[TILE][DH_MAX];
shared float pre[TILE][GATES * DH_MAX];

void main()
{
    uint head = gl_WorkGroupID.x, b0 = gl_WorkGroupID.y * TILE;
    uint row = gl_LocalInvocationID.x, gate = row / pc.dh, unit = row % pc.dh;
    uint hidden = pc.heads * pc.dh, width = GATES * hidden;
    uint column = gate * hidden + head * pc.dh + unit;   // this row's index in x and the bias
    bool pointwise = row < pc.dh;
    bool owner = row < GATES * pc.dh;                     // owns a row of R

    float weights[DH_MAX];
    [[unroll]] for (uint k = 0; k < DH_MAX; k++) weights[k] = owner && k < pc.dh ? pc.r.v[(head * GATES * pc.dh + row) * pc.dh + k] : 0.0;
    float bias = owner && uint64_t(pc.bias) != 0 ? pc.bias.v[column] : 0.0;

    // Units past Dh meet zero weights, but 0 * (stale shared memory) can be NaN: clear the tile first.
    for (uint e = gl_LocalInvocationID.x; e < TILE * DH_MAX; e += gl_WorkGroupSize.x) hs[e / DH_MAX][e % DH_MAX] = 0.0;
    barrier();

    float c[TILE], n[TILE], m[TILE];
    [[unroll]] for (uint i = 0; i < TILE; i++)
    {
        uint b = b0 + i;
        uint at = b * hidden + head * pc.dh + unit;
        bool valid = b < pc.batch && pointwise;
        if (pointwise) hs[i][unit] = valid ? loadState(pc.h0, at) : 0.0;
        c[i] = valid ? loadState(pc.c0, at) : 0.0;
        n[i] = valid ? loadState(pc.n0, at) : 0.0;
        m[i] = valid ? loadState(pc.m0, at) : 0.0;
    }
    barrier();

    for (uint t = 0; t < pc.t; t++)
    {
        if (owner)
        [[unroll]] for (uint i = 0; i < TILE; i++)
        {
            uint b = b0 + i;
            if (b >= pc.batch) break;
            float acc = bias;
            [[unroll]] for (uint k = 0; k < DH_MAX; k++) acc += weights[k] * hs[i][k];
#if CELL == GRU
            if (gate != 2) acc += pc.x.v[(b * pc.t + t) * width + column];
#else
            acc += pc.x.v[(b * pc.t + t) * width + column];
#endif
            pre[i][row] = acc;
        }
        barrier();
        if (pointwise)
        {
            [[unroll]] for (uint i = 0; i < TILE; i++)
            {
                uint b = b0 + i;
                if (b >= pc.batch) break;
                uint u = head * pc.dh + unit;
                uint token = b * pc.t + t;
                float a[GATES];
                [[unroll]] for (uint g = 0; g < GATES; g++) a[g] = pre[i][g * pc.dh + unit];
#if CELL == GRU
                float xn = pc.x.v[token * width + 2 * hidden + u];
#else
                float xn = 0.0;
#endif
                float h = cellForward(a, xn, hs[i][unit], c[i], n[i], m[i], pc.saved, token * SAVED * hidden + u, hidden);
                hs[i][unit] = h;
                pc.y.v[token * hidden + u] = h;
            }
        }
        barrier();
    }

    if (pointwise)
        [[unroll]] for (uint i = 0; i < TILE; i++)
        {
            uint b = b0 + i;
            if (b >= pc.batch) break;
            uint at = b * hidden + head * pc.dh + unit;
            if (uint64_t(pc.hT) != 0) pc.hT.v[at] = hs[i][unit];
            if (uint64_t(pc.cT) != 0) pc.cT.v[at] = c[i];
            if (uint64_t(pc.nT) != 0) pc.nT.v[at] = n[i];
            if (uint64_t(pc.mT) != 0) pc.mT.v[at] = m[i];
        }
}
