// Element types of a tensor as the host's DType enum numbers them.
#define DTYPE_F32 0
#define DTYPE_F16 1
#define DTYPE_BF16 2

// bf16 is the upper half of an f32.
float bf16ToFloat(uint bits) { return uintBitsToFloat(bits << 16); }

// Round to nearest even on the dropped 16 bits; NaN stays a quiet NaN.
uint floatToBf16(float value)
{
    uint bits = floatBitsToUint(value);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (bits >> 16) | 0x40u;
    return (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
}

float f16ToFloat(uint bits) { return unpackHalf2x16(bits).x; }
uint floatToF16(float value) { return packHalf2x16(vec2(value, 0.0)) & 0xFFFFu; }

// Reads element i of a tensor of the given dtype whose storage starts at address 'base'.
float loadAs(uint64_t base, uint dtype, uint i)
{
    if (dtype == DTYPE_F32) return F32Buffer(base).v[i];
    uint bits = uint(U16Buffer(base).v[i]);
    return dtype == DTYPE_F16 ? f16ToFloat(bits) : bf16ToFloat(bits);
}

void storeAs(uint64_t base, uint dtype, uint i, float value)
{
    if (dtype == DTYPE_F32) { F32Buffer(base).v[i] = value; return; }
    U16Buffer(base).v[i] = uint16_t(dtype == DTYPE_F16 ? floatToF16(value) : floatToBf16(value));
}
