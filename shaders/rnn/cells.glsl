// Cell math shared by the rnn kernels (forward and backward, fused and per-step), one unit at one
// step. CELL picks the cell; GATES and SAVED follow. Layouts as in Engine/Ops/Rnn.cs: per (b, t)
// the saved row holds SAVED blocks of H*Dh values (LSTM i, f, g, o, c; GRU r, z, n, q = R_n h + b_hn;
// sLSTM i', f', z, o, m, c, n, m; Elman nothing), block k of unit u at savedAt + k * hidden.
// The backward mirrors Engine.Cpu/Rnn/RnnRecurrence.cs line by line.
#define LSTM 0
#define GRU 1
#define SLSTM 2
#define ELMAN 3
#if CELL == LSTM || CELL == SLSTM
#define GATES 4
#elif CELL == GRU
#define GATES 3
#else
#define GATES 1
#endif
#if CELL == LSTM
#define SAVED 5
#elif CELL == GRU
#define SAVED 4
#elif CELL == SLSTM
#define SAVED 8
#else
#define SAVED 0
#endif

float loadState(F32Buffer s, uint at) { return uint64_t(s) != 0 ? s.v[at] : 0.0; }

// Forward. a[g]: gate g's pre-activation x + R h + bias, except GRU's n gate, where a[2] is the
// recurrent part q = R_n h + b_hn alone and xn is x_n. hPrev: this unit's h_{t-1} (GRU).
// c, n, m: the unit's states, advanced to step t. Writes the saved row when saved != 0. Returns h_t.
float cellForward(float a[GATES], float xn, float hPrev, inout float c, inout float n, inout float m, F32Buffer saved, uint savedAt, uint hidden)
{
    bool keep = uint64_t(saved) != 0;
#if CELL == LSTM
    float ig = sigmoid(a[0]), fg = sigmoid(a[1]), gg = stableTanh(a[2]), og = sigmoid(a[3]);
    c = fg * c + ig * gg;
    if (keep)
    {
        saved.v[savedAt] = ig; saved.v[savedAt + hidden] = fg; saved.v[savedAt + 2 * hidden] = gg;
        saved.v[savedAt + 3 * hidden] = og; saved.v[savedAt + 4 * hidden] = c;
    }
    return og * stableTanh(c);
#elif CELL == GRU
    float rg = sigmoid(a[0]), zg = sigmoid(a[1]);
    float ng = stableTanh(xn + rg * a[2]);
    if (keep)
    {
        saved.v[savedAt] = rg; saved.v[savedAt + hidden] = zg; saved.v[savedAt + 2 * hidden] = ng; saved.v[savedAt + 3 * hidden] = a[2];
    }
    return (1.0 - zg) * ng + zg * hPrev;
#elif CELL == SLSTM
    // m_t = max(log f + m_{t-1}, i~), i' = exp(i~ - m_t), f' = exp(log f + m_{t-1} - m_t)
    float logF = min(a[1], 0.0) - log(1.0 + exp(-abs(a[1])));   // log sigmoid(f~)
    float mNew = max(logF + m, a[0]);
    float ip = exp(a[0] - mNew), fp = exp(logF + m - mNew);
    float zg = stableTanh(a[2]), og = sigmoid(a[3]);
    c = fp * c + ip * zg;
    n = fp * n + ip;
    m = mNew;
    if (keep)
    {
        saved.v[savedAt] = ip; saved.v[savedAt + hidden] = fp; saved.v[savedAt + 2 * hidden] = zg; saved.v[savedAt + 3 * hidden] = og;
        saved.v[savedAt + 4 * hidden] = mNew; saved.v[savedAt + 5 * hidden] = c; saved.v[savedAt + 6 * hidden] = n; saved.v[savedAt + 7 * hidden] = mNew;
    }
    return og * c / n;
#else
    return stableTanh(a[0]);
#endif
}

// The states c, n, m of step t - 1 the backward needs: from the saved row of t - 1 (prevAt), or at
// t = 0 from the initial states (first; stateAt indexes [B, H*Dh]).
void previousStates(F32Buffer saved, uint prevAt, bool first, F32Buffer c0, F32Buffer n0, F32Buffer m0, uint stateAt, uint hidden,
    out float cPrev, out float nPrev, out float mPrev)
{
    cPrev = 0.0; nPrev = 0.0; mPrev = 0.0;
#if CELL == LSTM
    cPrev = first ? loadState(c0, stateAt) : saved.v[prevAt + 4 * hidden];
#elif CELL == SLSTM
    cPrev = first ? loadState(c0, stateAt) : saved.v[prevAt + 5 * hidden];
    nPrev = first ? loadState(n0, stateAt) : saved.v[prevAt + 6 * hidden];
    mPrev = first ? loadState(m0, stateAt) : saved.v[prevAt + 7 * hidden];
#endif
}

// Backward. dH: the whole gradient reaching h_t (dy_t + R^T dq_{t+1}, plus GRU's direct term).
// dc, dn: gradients reaching c_t, n_t on entry, c_{t-1}, n_{t-1} on return. dhDirect: the part of
// the gradient reaching h_{t-1} that bypasses R (GRU: dH z; else 0). dq[g]: gradient of gate g's
// recurrent part (what R and the bias see); dx[g]: of its pre-activation x (equal but for GRU's
// n gate: dx_n = da_n, dq_n = r da_n). hPrev: h_{t-1} (GRU), hNow: h_t (Elman).
void cellBackward(float dH, inout float dc, inout float dn, out float dhDirect, F32Buffer saved, uint savedAt, uint hidden,
    float hPrev, float hNow, float cPrev, float nPrev, float mPrev, out float dq[GATES], out float dx[GATES])
{
    dhDirect = 0.0;
#if CELL == LSTM
    float i = saved.v[savedAt], f = saved.v[savedAt + hidden], g = saved.v[savedAt + 2 * hidden];
    float o = saved.v[savedAt + 3 * hidden], c = saved.v[savedAt + 4 * hidden];
    float tc = stableTanh(c);
    float dcT = dc + dH * o * (1.0 - tc * tc);
    dq[0] = dcT * g * i * (1.0 - i);
    dq[1] = dcT * cPrev * f * (1.0 - f);
    dq[2] = dcT * i * (1.0 - g * g);
    dq[3] = dH * tc * o * (1.0 - o);
    dc = dcT * f;
    dx = dq;
#elif CELL == GRU
    float r = saved.v[savedAt], z = saved.v[savedAt + hidden], n = saved.v[savedAt + 2 * hidden], q = saved.v[savedAt + 3 * hidden];
    float daN = dH * (1.0 - z) * (1.0 - n * n);
    dq[0] = daN * q * r * (1.0 - r);
    dq[1] = dH * (hPrev - n) * z * (1.0 - z);
    dq[2] = daN * r;
    dx[0] = dq[0]; dx[1] = dq[1]; dx[2] = daN;
    dhDirect = dH * z;
#elif CELL == SLSTM
    // h does not depend on m (c and n share its scale): no gradient flows through m.
    float ip = saved.v[savedAt], fp = saved.v[savedAt + hidden], z = saved.v[savedAt + 2 * hidden], o = saved.v[savedAt + 3 * hidden];
    float m = saved.v[savedAt + 4 * hidden], c = saved.v[savedAt + 5 * hidden], n = saved.v[savedAt + 6 * hidden];
    // sigmoid(f~) = exp(log f), with log f = log f' + m_t - m_{t-1}
    float sigmoidF = exp(log(fp) + m - mPrev);
    float dO = dH * c / n;
    float dcT = dc + dH * o / n;
    float dnT = dn - dH * o * c / (n * n);
    float dfp = dcT * cPrev + dnT * nPrev, dip = dcT * z + dnT, dz = dcT * ip;
    dq[0] = dip * ip;
    dq[1] = dfp * fp * (1.0 - sigmoidF);
    dq[2] = dz * (1.0 - z * z);
    dq[3] = dO * o * (1.0 - o);
    dc = dcT * fp;
    dn = dnT * fp;
    dx = dq;
#else
    dq[0] = dH * (1.0 - hNow * hNow);
    dx = dq;
#endif
}
