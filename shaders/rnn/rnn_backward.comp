#version 460
// Head-wise recurrent cells, backward through time, fused: one workgroup per (head, tile of batch
// rows) walks t = T-1 .. 0 inside one dispatch, from the forward's saved activations.
// Invocation q = SLOTS * k + s holds column k of gate block s of the head's R in registers,
// w[j] = R[s*Dh + j][k] (GRU's three gates padded to four slots, so that the SLOTS invocations of a
// unit form one power-of-two cluster of a subgroup). Per step t:
//   1. pointwise, unit k of batch row i on the invocation with s = i mod SLOTS:
//      dH = dy_t + (R^T dq_{t+1})[k] (+ GRU's direct term), the cell's backward (cells.glsl) gives
//      dq_t (into shared memory, the per-head dq store and, as dx, the pre-activation gradient)
//      and carries dc (sLSTM also dn) in registers;
//   2. every invocation: partial = sum_j w[j] dq_t[i][s*Dh + j]; a clustered subgroup add over the
//      SLOTS invocations of unit k gives (R^T dq_t)[k], the recurrent gradient reaching h_{t-1}.
// After t = 0 that gradient is dh_0 (dc, dn give dc_0, dn_0). dR and the bias gradient are formed by
// the host after the loop from the stores written here: dq [H, B*T, G*Dh] and h_{t-1} [H, B*T, Dh]
// (row b*T + t), as one batched GEMM dR_h = dq_h^T h_{t-1,h} and a column sum.
// Needs whole subgroups (the host asks for them) whose size is a multiple of SLOTS.
//! variant lstm_bwd_32 -DCELL=0 -DDH_MAX=32
//! variant lstm_bwd_64 -DCELL=0 -DDH_MAX=64
//! variant lstm_bwd_128 -DCELL=0 -DDH_MAX=128
//! variant gru_bwd_32 -DCELL=1 -DDH_MAX=32
//! variant gru_bwd_64 -DCELL=1 -DDH_MAX=64
//! variant gru_bwd_128 -DCELL=1 -DDH_MAX=128
//! variant slstm_bwd_32 -DCELL=2 -DDH_MAX=32
//! variant slstm_bwd_64 -DCELL=2 -DDH_MAX=64
//! variant slstm_bwd_128 -DCELL=2 -DDH_MAX=128
//! variant elman_bwd_32 -DCELL=3 -DDH_MAX=32
//! variant elman_bwd_64 -DCELL=3 -DDH_MAX=64
//! variant elman_bwd_128 -DCELL=3 -DDH_MAX=128
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_clustered : require
#include "buffers.glsl"
#include "activations.glsl"
#include "cells.glsl"

#if CELL == ELMAN
#define SLOTS 1
#else
#define SLOTS 4
#endif
#define STRIDE (DH_MAX + 1)   // a gate block's row in shared memory, padded so the slots hit different banks

layout(local_size_x_id = 0) in;   // SLOTS * Dh invocations, rounded up to whole subgroups (the rest idle)
// Batch rows per workgroup (1, 2, 4 or 8): the host takes smaller tiles when heads x tiles would
// leave most of the device idle (R sits in registers of every tile's workgroup alike).
layout(constant_id = 1) const uint TILE = 8;

layout(push_constant) uniform Push
{
    F32Buffer r;        // [H, G*Dh, Dh]
    F32Buffer saved;    // [B, T, SAVED*H*Dh]
    F32Buffer y;        // forward outputs [B, T, H*Dh]
    F32Buffer dy;       // [B, T, H*Dh]
    F32Buffer dhT;      // [B, H*Dh] or 0; likewise dcT (LSTM)
    F32Buffer dcT;
    F32Buffer h0;       // [B, H*Dh] or 0; likewise c0, n0, m0
    F32Buffer c0;
    F32Buffer n0;
    F32Buffer m0;
    F32Buffer dx;       // [B, T, G*H*Dh]
    F32Buffer dq;       // [H, B*T, G*Dh]
    F32Buffer hPrev;    // [H, B*T, Dh]
    F32Buffer dh0;      // [B, H*Dh] or 0; likewise dc0, dn0
    F32Buffer dc0;
    F32Buffer dn0;
    uint batch;
    uint t;
    uint heads;
    uint dh;
} pc;

shared float dqs[TILE][SLOTS * STRIDE];

void main()
{
    uint head = gl_WorkGroupID.x, b0 = gl_WorkGroupID.y * TILE;
    uint q = gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID;
    uint unit = q / SLOTS, slot = q % SLOTS;
    bool holds = unit < pc.dh && slot < GATES;            // holds a column of R
    uint hidden = pc.heads * pc.dh, width = GATES * hidden, u = head * pc.dh + unit;
    uint rows = GATES * pc.dh, tokens = pc.batch * pc.t;

    float w[DH_MAX];
    [[unroll]] for (uint j = 0; j < DH_MAX; j++) w[j] = holds && j < pc.dh ? pc.r.v[(head * rows + slot * pc.dh + j) * pc.dh + unit] : 0.0;

    // Entries past Dh stay 0 (their weights are 0, but 0 * stale shared memory could be NaN).
    for (uint e = gl_LocalInvocationIndex; e < TILE * SLOTS * STRIDE; e += gl_WorkGroupSize.x) dqs[e / (SLOTS * STRIDE)][e % (SLOTS * STRIDE)] = 0.0;

    // dhRec: (R^T dq_{t+1})[unit] of each row (the final-state gradient before the first step),
    // held by every slot of the unit; dhDirect, dc, dn: held by the row's owner.
    float dhRec[TILE], dhDirect[TILE], dc[TILE], dn[TILE];
    [[unroll]] for (uint i = 0; i < TILE; i++)
    {
        uint b = b0 + i;
        bool valid = b < pc.batch && unit < pc.dh;
        dhRec[i] = valid ? loadState(pc.dhT, b * hidden + u) : 0.0;
        dc[i] = valid && CELL == LSTM ? loadState(pc.dcT, b * hidden + u) : 0.0;
        dhDirect[i] = 0.0;
        dn[i] = 0.0;
    }
    barrier();

    for (int t = int(pc.t) - 1; t >= 0; t--)
    {
        if (unit < pc.dh)
        [[unroll]] for (uint i = 0; i < TILE; i++)
        {
            uint b = b0 + i;
            if (b >= pc.batch) break;
            if (i % SLOTS != slot) continue;
            uint token = b * pc.t + uint(t), stateAt = b * hidden + u;
            uint savedAt = token * SAVED * hidden + u;
            uint before = t > 0 ? token - 1 : token;          // step t - 1 (an index in range either way)
            float hp = t > 0 ? pc.y.v[before * hidden + u] : loadState(pc.h0, stateAt);
            float cPrev, nPrev, mPrev;
            previousStates(pc.saved, before * SAVED * hidden + u, t == 0, pc.c0, pc.n0, pc.m0, stateAt, hidden, cPrev, nPrev, mPrev);
            float dH = pc.dy.v[token * hidden + u] + dhRec[i] + dhDirect[i];
            float dqv[GATES], dxv[GATES];
            cellBackward(dH, dc[i], dn[i], dhDirect[i], pc.saved, savedAt, hidden, hp, pc.y.v[token * hidden + u], cPrev, nPrev, mPrev, dqv, dxv);
            uint store = head * tokens + token;
            [[unroll]] for (uint g = 0; g < GATES; g++)
            {
                dqs[i][g * STRIDE + unit] = dqv[g];
                pc.dx.v[token * width + g * hidden + u] = dxv[g];
                pc.dq.v[store * rows + g * pc.dh + unit] = dqv[g];
            }
            pc.hPrev.v[store * pc.dh + unit] = hp;
        }
        barrier();
        [[unroll]] for (uint i = 0; i < TILE; i++)
        {
            if (b0 + i >= pc.batch) break;
            float partial = 0.0;
            if (holds) [[unroll]] for (uint j = 0; j < DH_MAX; j++) partial += w[j] * dqs[i][slot * STRIDE + j];
#if SLOTS > 1
            dhRec[i] = subgroupClusteredAdd(partial, SLOTS);
#else
            dhRec[i] = partial;
#endif
        }
        barrier();
    }

    if (unit < pc.dh)
        [[unroll]] for (uint i = 0; i < TILE; i++)
        {
            uint b = b0 + i;
            if (b >= pc.batch) break;
            if (i % SLOTS != slot) continue;
            uint at = b * hidden + u;
            if (uint64_t(pc.dh0) != 0) pc.dh0.v[at] = dhRec[i] + dhDirect[i];
            if (uint64_t(pc.dc0) != 0) pc.dc0.v[at] = dc[i];
            if (uint64_t(pc.dn0) != 0) pc.dn0.v[at] = dn[i];
        }
}
