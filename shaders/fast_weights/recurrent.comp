#version 460
// Fast weight memories, recurrent form: the state S (Dv x Dk, per batch and head) lives in
// registers for the whole sequence; one workgroup per (batch, head, block of state rows).
//   delta rule (RULE_DELTA):  u_t = beta_t (v_t - alpha_t S_{t-1} k_t)
//                              S_t = alpha_t S_{t-1} + u_t k_t^T          (alpha_t = 1 ungated)
//   sum rule   (RULE_SUM):    S_t = S_{t-1} + v_t k_t^T,  z_t = z_{t-1} + k_t
//   output:                   o_t = S_t (scale q_t)   [ / (z_t . (scale q_t) + eps) when normalising ]
// Each row of S belongs to LANES consecutive invocations (a power of two within one subgroup);
// lane l holds columns l, l + LANES, l + 2 LANES, ... (so the k and q loads of a row coalesce), at
// most KMAX of them. Row dot products (S k, S q) reduce across the lanes with subgroup shuffles.
// Rows are independent given k, q, v, beta, alpha, so blocks of rows may run in different
// workgroups. Layouts: q, k [B, T, H, Dk]; v, o [B, T, H, Dv]; beta, alpha [B, T, H];
// S [B, H, Dv, Dk]; z [B, H, Dk]. Inputs f32, f16 or bf16 (IN_DTYPE); S, z, o in f32.
//! variant delta_f32 -DRULE_DELTA=1 -DIN_DTYPE=0
//! variant delta_f16 -DRULE_DELTA=1 -DIN_DTYPE=1
//! variant delta_bf16 -DRULE_DELTA=1 -DIN_DTYPE=2
//! variant sum_f32 -DRULE_DELTA=0 -DIN_DTYPE=0
//! variant sum_f16 -DRULE_DELTA=0 -DIN_DTYPE=1
//! variant sum_bf16 -DRULE_DELTA=0 -DIN_DTYPE=2
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_shuffle : require
#include "buffers.glsl"
#include "dtype.glsl"

#define KMAX 32

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint LANES = 4;

layout(push_constant) uniform Push
{
    uint64_t q;
    uint64_t k;
    uint64_t v;
    uint64_t beta;          // delta rule: [B, T, H]
    uint64_t alpha;         // 0: ungated
    uint64_t initialState;  // 0: zeros
    uint64_t finalState;    // 0: not written (may equal initialState: updated in place)
    uint64_t outputs;       // [B, T, H, Dv]
    uint64_t initialZ;      // sum rule with normaliser: [B, H, Dk] (0: zeros)
    uint64_t finalZ;        // 0: not written
    uint64_t checkpoints;   // delta rule, for the backward: S before steps 0, C, 2C, ... [B, H, ceil(T/C), Dv, Dk] (0: none)
    uint t;
    uint heads;
    uint dk;
    uint dv;
    float scale;
    float eps;
    uint normalise;
    uint interval;          // C, the checkpoint interval
} pc;

float reduceRow(float x)
{
    [[unroll]] for (uint offset = LANES / 2; offset > 0; offset /= 2) x += subgroupShuffleXor(x, offset);
    return x;
}

void main()
{
    uint bh = gl_WorkGroupID.x;                 // b * heads + h
    uint b = bh / pc.heads, h = bh % pc.heads;
    uint lane = gl_LocalInvocationID.x % LANES;
    uint row = gl_WorkGroupID.y * (gl_WorkGroupSize.x / LANES) + gl_LocalInvocationID.x / LANES;
    bool rowValid = row < pc.dv;
    uint columns = (pc.dk + LANES - 1) / LANES;  // <= KMAX, checked by the host

    float s[KMAX];
    float z[KMAX];
    [[unroll]] for (uint j = 0; j < KMAX; j++)
    {
        uint c = lane + j * LANES;
        bool inside = j < columns && c < pc.dk && rowValid;
        s[j] = inside && pc.initialState != 0 ? F32Buffer(pc.initialState).v[(bh * pc.dv + row) * pc.dk + c] : 0.0;
        z[j] = inside && pc.initialZ != 0 ? F32Buffer(pc.initialZ).v[bh * pc.dk + c] : 0.0;
    }
    // z may be updated in place and every row reads it: all reads happen before row 0 writes.
    barrier();

    uint checkpointCount = pc.interval == 0 ? 0 : (pc.t + pc.interval - 1) / pc.interval;
    for (uint t = 0; t < pc.t; t++)
    {
        uint token = (b * pc.t + t) * pc.heads + h;     // index into [B, T, H]
        if (pc.checkpoints != 0 && t % pc.interval == 0 && rowValid)
            [[unroll]] for (uint j = 0; j < KMAX; j++)
            {
                uint c = lane + j * LANES;
                if (j < columns && c < pc.dk)
                    F32Buffer(pc.checkpoints).v[((bh * checkpointCount + t / pc.interval) * pc.dv + row) * pc.dk + c] = s[j];
            }
        float kv[KMAX], qv[KMAX];
        [[unroll]] for (uint j = 0; j < KMAX; j++)
        {
            uint c = lane + j * LANES;
            bool inside = j < columns && c < pc.dk;
            kv[j] = inside ? loadAs(pc.k, IN_DTYPE, token * pc.dk + c) : 0.0;
            qv[j] = inside ? pc.scale * loadAs(pc.q, IN_DTYPE, token * pc.dk + c) : 0.0;
        }
        float value = rowValid ? loadAs(pc.v, IN_DTYPE, token * pc.dv + row) : 0.0;
#if RULE_DELTA
        float gate = pc.alpha != 0 ? loadAs(pc.alpha, IN_DTYPE, token) : 1.0;
        float sk = 0.0;
        [[unroll]] for (uint j = 0; j < KMAX; j++) sk += s[j] * kv[j];
        sk = reduceRow(sk);
        float u = loadAs(pc.beta, IN_DTYPE, token) * (value - gate * sk);
        [[unroll]] for (uint j = 0; j < KMAX; j++) s[j] = gate * s[j] + u * kv[j];
#else
        [[unroll]] for (uint j = 0; j < KMAX; j++) { s[j] += value * kv[j]; z[j] += kv[j]; }
#endif
        float o = 0.0, zq = 0.0;
        [[unroll]] for (uint j = 0; j < KMAX; j++) { o += s[j] * qv[j]; zq += z[j] * qv[j]; }
        o = reduceRow(o);
#if !RULE_DELTA
        if (pc.normalise != 0) o /= reduceRow(zq) + pc.eps;
#endif
        if (rowValid && lane == 0) F32Buffer(pc.outputs).v[token * pc.dv + row] = o;
    }

    [[unroll]] for (uint j = 0; j < KMAX; j++)
    {
        uint c = lane + j * LANES;
        if (j >= columns || c >= pc.dk || !rowValid) continue;
        if (pc.finalState != 0) F32Buffer(pc.finalState).v[(bh * pc.dv + row) * pc.dk + c] = s[j];
        if (pc.finalZ != 0 && row == 0) F32Buffer(pc.finalZ).v[bh * pc.dk + c] = z[j];
    }
}
