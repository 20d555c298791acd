// Activation ids as the host's Activation enum numbers them; forward f(x) and derivative f'(x).
#define ACT_IDENTITY 0
#define ACT_SIGMOID 1
#define ACT_TANH 2
#define ACT_SILU 3
#define ACT_ELU_PLUS_ONE 4
#define ACT_RELU 5

float sigmoid(float x) { return 1.0 / (1.0 + exp(-x)); }

// tanh through exp of a non-positive argument: accurate and never overflows.
float stableTanh(float x)
{
    float e = exp(-2.0 * abs(x));
    return sign(x) * (1.0 - e) / (1.0 + e);
}

float activate(uint id, float x)
{
    switch (id)
    {
        case ACT_SIGMOID: return sigmoid(x);
        case ACT_TANH: return stableTanh(x);
        case ACT_SILU: return x * sigmoid(x);
        case ACT_ELU_PLUS_ONE: return x > 0.0 ? x + 1.0 : exp(x);
        case ACT_RELU: return max(x, 0.0);
        default: return x;
    }
}

float activateDerivative(uint id, float x)
{
    switch (id)
    {
        case ACT_SIGMOID: { float s = sigmoid(x); return s * (1.0 - s); }
        case ACT_TANH: { float t = stableTanh(x); return 1.0 - t * t; }
        case ACT_SILU: { float s = sigmoid(x); return s * (1.0 + x * (1.0 - s)); }
        case ACT_ELU_PLUS_ONE: return x > 0.0 ? 1.0 : exp(x);
        case ACT_RELU: return x > 0.0 ? 1.0 : 0.0;
        default: return 1.0;
    }
}
