#version 460
// Head-wise recurrent cells, backward through time, one step per dispatch (the large-head
// counterpart of rnn_backward.comp; the host records dispatches for t = T-1 .. 0 into one command
// buffer, then one more with t = -1). Split over workgroups by unit: a subgroup takes unit k of
// head h (global unit gu = h*Dh + k) for a tile of TILE batch rows. Per dispatch (step t):
//   (R^T dq_{t+1})[k] = sum_r RT[k][r] dq_{t+1}[r] over the head's G*Dh rows, lanes striding over r
//   (RT [H, Dh, G*Dh] is R transposed once per backward, so these reads are coalesced; dq_{t+1} is
//   the previous dispatch's output in the dq store), then a subgroup add (the final-state gradient
//   replaces it at t = T-1);
//   lane i mod (subgroup size) runs the cell's backward for batch row i (cells.glsl): dx, dq_t and
//   h_{t-1} into their stores (layouts as in rnn_backward.comp), dc, dn and GRU's direct term
//   dH z carried between dispatches in the scratch [3][B, H*Dh].
// At t = -1 only the product runs: dh_0 = R^T dq_0 + the direct term; dc_0, dn_0 from the scratch.
//! variant lstm_bwd_step -DCELL=0
//! variant gru_bwd_step -DCELL=1
//! variant slstm_bwd_step -DCELL=2
//! variant elman_bwd_step -DCELL=3
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "buffers.glsl"
#include "activations.glsl"
#include "cells.glsl"

#define TILE 16     // batch rows per workgroup

layout(local_size_x_id = 0) in;

layout(push_constant) uniform Push
{
    F32Buffer rt;       // [H, Dh, G*Dh]: R transposed per head
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
    F32Buffer state;    // [3][B, H*Dh]: dc, dn, direct term, reaching step t - 1
    uint batch;
    uint t;
    uint heads;
    uint dh;
    int step;
    uint unitsPerGroup;
} pc;

void main()
{
    uint hidden = pc.heads * pc.dh, width = GATES * hidden, plane = pc.batch * hidden;
    uint rows = GATES * pc.dh, tokens = pc.batch * pc.t;
    uint b0 = gl_WorkGroupID.y * TILE, lane = gl_SubgroupInvocationID;
    uint first = gl_WorkGroupID.x * pc.unitsPerGroup, last = min(first + pc.unitsPerGroup, hidden);
    bool product = pc.step + 1 < int(pc.t);          // dq_{t+1} exists
    bool final = pc.step == int(pc.t) - 1;           // the first dispatch: states from dFinal
    uint next = uint(pc.step + 1);
    for (uint gu = first + gl_SubgroupID; gu < last; gu += gl_NumSubgroups)
    {
        uint head = gu / pc.dh, k = gu % pc.dh;
        float acc[TILE];
        [[unroll]] for (uint i = 0; i < TILE; i++) acc[i] = 0.0;
        if (product)
            for (uint r = lane; r < rows; r += gl_SubgroupSize)
            {
                float w = pc.rt.v[(head * pc.dh + k) * rows + r];
                [[unroll]] for (uint i = 0; i < TILE; i++)
                {
                    uint b = b0 + i;
                    if (b >= pc.batch) break;
                    acc[i] += w * pc.dq.v[(head * tokens + b * pc.t + next) * rows + r];
                }
            }
        [[unroll]] for (uint i = 0; i < TILE; i++)
        {
            if (b0 + i >= pc.batch) break;
            acc[i] = subgroupAdd(acc[i]);
        }
        [[unroll]] for (uint i = 0; i < TILE; i++)
        {
            uint b = b0 + i;
            if (b >= pc.batch) break;
            if (i % gl_SubgroupSize != lane) continue;
            uint at = b * hidden + gu;
            float dhRec = product ? acc[i] : loadState(pc.dhT, at);
            float dc = final ? (CELL == LSTM ? loadState(pc.dcT, at) : 0.0) : pc.state.v[at];
            float dn = final ? 0.0 : pc.state.v[plane + at];
            float dhDirect = final ? 0.0 : pc.state.v[2 * plane + at];
            if (pc.step < 0)
            {
                if (uint64_t(pc.dh0) != 0) pc.dh0.v[at] = dhRec + dhDirect;
                if (uint64_t(pc.dc0) != 0) pc.dc0.v[at] = dc;
                if (uint64_t(pc.dn0) != 0) pc.dn0.v[at] = dn;
                continue;
            }
            uint s = uint(pc.step), token = b * pc.t + s, savedAt = token * SAVED * hidden + gu;
            uint before = s > 0 ? token - 1 : token;          // step t - 1 (an index in range either way)
            float hp = s > 0 ? pc.y.v[before * hidden + gu] : loadState(pc.h0, at);
            float cPrev, nPrev, mPrev;
            previousStates(pc.saved, before * SAVED * hidden + gu, s == 0, pc.c0, pc.n0, pc.m0, at, hidden, cPrev, nPrev, mPrev);
            float dH = pc.dy.v[token * hidden + gu] + dhRec + dhDirect;
            float dqv[GATES], dxv[GATES];
            cellBackward(dH, dc, dn, dhDirect, pc.saved, savedAt, hidden, hp, pc.y.v[token * hidden + gu], cPrev, nPrev, mPrev, dqv, dxv);
            uint store = head * tokens + token;
            [[unroll]] for (uint g = 0; g < GATES; g++)
            {
                pc.dx.v[token * width + g * hidden + gu] = dxv[g];
                pc.dq.v[store * rows + g * pc.dh + k] = dqv[g];
            }
            pc.hPrev.v[store * pc.dh + k] = hp;
            pc.state.v[at] = dc;
            pc.state.v[plane + at] = dn;
            pc.state.v[2 * plane + at] = dhDirect;
        }
    }
}
