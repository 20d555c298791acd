#version 460
// Delta rule (gated or not), recurrent backward, one workgroup per (batch, head) holding every row
// of the state: row r belongs to LANES invocations (lane l: columns l, l + LANES, ...), as in
// recurrent.comp. Time runs backwards in intervals of C steps: the interval's states are rebuilt
// from the forward's checkpoint into a per-(batch, head) scratch of C states, then walked in
// reverse. Per step, with dS (registers) the gradient reaching S_t:
//   dq_t = scale S_t^T do_t;  dS += scale do_t q_t^T;  e = v_t - alpha S_{t-1} k_t;  du = dS k_t
//   dk_t = dS^T (beta e) - alpha beta S_{t-1}^T du;  dv_t = beta du;  dbeta_t = e . du
//   dalpha_t = <dS, S_{t-1}> - beta (S_{t-1} k_t) . du;  dS <- alpha (dS - beta du k_t^T)
// Sums over rows (dq, dk per column; dbeta, dalpha) go through shared memory with float atomics.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_EXT_shader_atomic_float : require
#include "buffers.glsl"

#define KMAX 32
#define MAX_DK 1024

layout(local_size_x_id = 0) in;           // Dv * LANES invocations
layout(constant_id = 1) const uint LANES = 4;

layout(push_constant) uniform Push
{
    F32Buffer q;
    F32Buffer k;
    F32Buffer v;
    F32Buffer beta;
    F32Buffer alpha;        // 0: ungated
    F32Buffer dOut;
    F32Buffer dFinal;       // 0: none
    F32Buffer checkpoints;  // [B*H, ceil(T/C), Dv, Dk]
    F32Buffer scratch;      // [B*H, C, Dv, Dk]
    F32Buffer dQuery;
    F32Buffer dKey;
    F32Buffer dValue;
    F32Buffer dbeta;
    F32Buffer dalpha;       // 0 when ungated
    F32Buffer dInitial;     // 0: not written
    uint t;
    uint heads;
    uint dk;
    uint dvDim;
    float scale;
    uint interval;
} pc;

shared float columnQ[MAX_DK];
shared float columnK[MAX_DK];
shared float scalars[2];

float reduceRow(float x)
{
    [[unroll]] for (uint offset = LANES / 2; offset > 0; offset /= 2) x += subgroupShuffleXor(x, offset);
    return x;
}

void main()
{
    uint bh = gl_WorkGroupID.x, b = bh / pc.heads, h = bh % pc.heads;
    uint lane = gl_LocalInvocationID.x % LANES, row = gl_LocalInvocationID.x / LANES;
    uint columns = (pc.dk + LANES - 1) / LANES;
    uint intervals = (pc.t + pc.interval - 1) / pc.interval;
    uint stateSize = pc.dvDim * pc.dk;
    bool gated = uint64_t(pc.alpha) != 0;

    float dS[KMAX], s[KMAX], sp[KMAX];
    [[unroll]] for (uint j = 0; j < KMAX; j++)
    {
        uint c = lane + j * LANES;
        dS[j] = j < columns && c < pc.dk && uint64_t(pc.dFinal) != 0 ? pc.dFinal.v[bh * stateSize + row * pc.dk + c] : 0.0;
    }

    for (int interval = int(intervals) - 1; interval >= 0; interval--)
    {
        uint t0 = uint(interval) * pc.interval, t1 = min(t0 + pc.interval, pc.t);
        uint checkpointAt = (bh * intervals + uint(interval)) * stateSize + row * pc.dk;
        // Rebuild S_{t0} .. S_{t1-1} into the scratch (slot j holds the state after step t0 + j).
        [[unroll]] for (uint j = 0; j < KMAX; j++) { uint c = lane + j * LANES; s[j] = j < columns && c < pc.dk ? pc.checkpoints.v[checkpointAt + c] : 0.0; }
        for (uint t = t0; t < t1; t++)
        {
            uint token = (b * pc.t + t) * pc.heads + h;
            float kv[KMAX];
            [[unroll]] for (uint j = 0; j < KMAX; j++) { uint c = lane + j * LANES; kv[j] = j < columns && c < pc.dk ? pc.k.v[token * pc.dk + c] : 0.0; }
            float gate = gated ? pc.alpha.v[token] : 1.0;
            float sk = 0.0;
            [[unroll]] for (uint j = 0; j < KMAX; j++) sk += s[j] * kv[j];
            sk = reduceRow(sk);
            float u = pc.beta.v[token] * (pc.v.v[token * pc.dvDim + row] - gate * sk);
            uint slot = (bh * pc.interval + (t - t0)) * stateSize + row * pc.dk;
            [[unroll]] for (uint j = 0; j < KMAX; j++)
            {
                uint c = lane + j * LANES;
                s[j] = gate * s[j] + u * kv[j];
                if (j < columns && c < pc.dk) pc.scratch.v[slot + c] = s[j];
            }
        }
        // The scratch rows this invocation reads are the ones it wrote: no barrier needed for them.
        for (int ti = int(t1) - 1; ti >= int(t0); ti--)
        {
            uint t = uint(ti);
            uint token = (b * pc.t + t) * pc.heads + h;
            uint slotNow = (bh * pc.interval + (t - t0)) * stateSize + row * pc.dk;
            float kv[KMAX], qv[KMAX];
            [[unroll]] for (uint j = 0; j < KMAX; j++)
            {
                uint c = lane + j * LANES;
                bool inside = j < columns && c < pc.dk;
                kv[j] = inside ? pc.k.v[token * pc.dk + c] : 0.0;
                qv[j] = inside ? pc.q.v[token * pc.dk + c] : 0.0;
                s[j] = inside ? pc.scratch.v[slotNow + c] : 0.0;
                sp[j] = !inside ? 0.0 : t > t0 ? pc.scratch.v[slotNow - stateSize + c] : pc.checkpoints.v[checkpointAt + c];
            }
            for (uint c = gl_LocalInvocationID.x; c < pc.dk; c += gl_WorkGroupSize.x) { columnQ[c] = 0.0; columnK[c] = 0.0; }
            if (gl_LocalInvocationID.x < 2) scalars[gl_LocalInvocationID.x] = 0.0;
            barrier();
            float gate = gated ? pc.alpha.v[token] : 1.0, betaT = pc.beta.v[token];
            float dOut = pc.dOut.v[token * pc.dvDim + row];
            float sk = 0.0, du = 0.0, dSdotSp = 0.0;
            [[unroll]] for (uint j = 0; j < KMAX; j++)
            {
                uint c = lane + j * LANES;
                if (j < columns && c < pc.dk) atomicAdd(columnQ[c], pc.scale * s[j] * dOut);   // dq = scale S_t^T do
                dS[j] += pc.scale * dOut * qv[j];
                sk += sp[j] * kv[j];
                du += dS[j] * kv[j];
                dSdotSp += dS[j] * sp[j];
            }
            sk = reduceRow(sk);
            du = reduceRow(du);
            dSdotSp = reduceRow(dSdotSp);
            float e = pc.v.v[token * pc.dvDim + row] - gate * sk;
            [[unroll]] for (uint j = 0; j < KMAX; j++)
            {
                uint c = lane + j * LANES;
                if (j < columns && c < pc.dk) atomicAdd(columnK[c], dS[j] * betaT * e - gate * betaT * du * sp[j]);
                dS[j] = gate * (dS[j] - betaT * du * kv[j]);
            }
            if (lane == 0)
            {
                pc.dValue.v[token * pc.dvDim + row] = betaT * du;
                atomicAdd(scalars[0], e * du);
                atomicAdd(scalars[1], dSdotSp - betaT * sk * du);
            }
            barrier();
            for (uint c = gl_LocalInvocationID.x; c < pc.dk; c += gl_WorkGroupSize.x)
            {
                pc.dQuery.v[token * pc.dk + c] = columnQ[c];
                pc.dKey.v[token * pc.dk + c] = columnK[c];
            }
            if (gl_LocalInvocationID.x == 0)
            {
                pc.dbeta.v[token] = scalars[0];
                if (gated) pc.dalpha.v[token] = scalars[1];
            }
            barrier();
        }
    }
    if (uint64_t(pc.dInitial) != 0)
        [[unroll]] for (uint j = 0; j < KMAX; j++)
        {
            uint c = lane + j * LANES;
            if (j < columns && c < pc.dk) pc.dInitial.v[bh * stateSize + row * pc.dk + c] = dS[j];
        }
}
