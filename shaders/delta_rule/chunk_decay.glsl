// Decays of the gated chunked delta rule (the GATED builds of the portable stages; docs/ops.md,
// "Gated chunked form"): S_t = alpha_t S_{t-1} + u'_t k_t^T. Inside the chunk of the workgroup,
//   g_i = sum_{j <= i} log alpha_j                     (logDecay[i]; rows past the sequence end read
//                                                       alpha = 1, so g_63 = g_{n-1} for n rows)
//   gamma_i = exp(g_i)                                 (decay since the chunk start, row i)
//   Gamma_ij = exp(g_i - g_j), j <= i                  (decay from token j to token i)
//   tail_i = exp(g_63 - g_i)                           (decay from token i to the chunk end)
//   gamma_C = exp(g_63)                                (decay over the whole chunk)
// Every factor is the exp of a difference of logs, never a quotient of decays: a gamma that
// underflows to 0 (small alpha over many tokens) only zeroes a term, it never divides one.
// Gamma_ij for j > i would be exp of a positive number, possibly inf: callers form it only under
// their causal mask. alpha is f32 [B, T, H], in (0, 1] (checked on the host when values are checked).

shared float logAlpha[CHUNK];
shared float logDecay[CHUNK];

// logDecay for the chunk whose row r has alpha at alpha[origin + r stride], `count` rows. Called by
// every invocation in uniform control flow (the workgroup has at least CHUNK); ends with a barrier.
// Callers make sure nobody still reads the previous chunk's logDecay (a barrier since the last read).
void loadLogDecays(uint64_t alpha, uint origin, uint stride, uint count)
{
    uint id = gl_LocalInvocationID.x;
    if (id < CHUNK) logAlpha[id] = id < count ? log(F32Buffer(alpha).v[origin + id * stride]) : 0.0;
    barrier();
    if (id < CHUNK)
    {
        float g = 0.0;
        for (uint j = 0; j <= id; j++) g += logAlpha[j];
        logDecay[id] = g;
    }
    barrier();
}

float decayTo(uint i) { return exp(logDecay[i]); }
float decayBetween(uint i, uint j) { return exp(logDecay[i] - logDecay[j]); }
float decayToEnd(uint i) { return exp(logDecay[CHUNK - 1] - logDecay[i]); }
float chunkDecay() { return exp(logDecay[CHUNK - 1]); }
