// relp native kernels: N-API functions that compute in place on Float32Array memory owned by tfjs's CPU
// backend. Matrix multiply goes to OpenBLAS (cblas_sgemm, all cores, the CPU's vector units through
// OpenBLAS's run-time kernel dispatch); the element-wise kernels are plain loops compiled with -O3 for the
// build machine, written so that each element is computed with exactly the same float operations as tfjs's
// JavaScript kernels (the results are bit-identical to the CPU backend's, not merely close).
#include <cblas.h>
#include <malloc.h>
#include <node_api.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

extern "C" {
// OpenBLAS extensions (declared in cblas.h of most builds; declared here in case the header lacks them).
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char* openblas_get_config(void);
char* openblas_get_corename(void);
}

namespace {

#define NAPI_CALL(env, call)                                            \
  do {                                                                  \
    if ((call) != napi_ok) {                                            \
      napi_throw_error((env), nullptr, "relp-native: N-API call failed: " #call); \
      return nullptr;                                                   \
    }                                                                   \
  } while (0)

bool GetF32(napi_env env, napi_value v, float** data, size_t* length) {
  bool is_typed = false;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed) return false;
  napi_typedarray_type type;
  void* ptr = nullptr;
  napi_value buffer;
  size_t offset = 0;
  if (napi_get_typedarray_info(env, v, &type, length, &ptr, &buffer, &offset) != napi_ok) return false;
  if (type != napi_float32_array) return false;
  *data = static_cast<float*>(ptr);
  return true;
}

bool GetI64(napi_env env, napi_value v, int64_t* out) {
  return napi_get_value_int64(env, v, out) == napi_ok;
}

bool GetBool(napi_env env, napi_value v, bool* out) { return napi_get_value_bool(env, v, out) == napi_ok; }

napi_value Throw(napi_env env, const std::string& msg) {
  napi_throw_error(env, nullptr, ("relp-native: " + msg).c_str());
  return nullptr;
}

// sgemm(a, b, out, batch, batchA, batchB, M, N, K, transA, transB)
// out[i] = op(a[i or 0]) · op(b[i or 0]), row-major; a is [batchA, M, K] (or [batchA, K, M] transposed),
// b is [batchB, K, N] (or [batchB, N, K]); batchA and batchB are either `batch` or 1 (broadcast).
napi_value Sgemm(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value args[11];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, nullptr, nullptr));
  if (argc != 11) return Throw(env, "sgemm expects 11 arguments");
  float *a, *b, *c;
  size_t la, lb, lc;
  if (!GetF32(env, args[0], &a, &la) || !GetF32(env, args[1], &b, &lb) || !GetF32(env, args[2], &c, &lc)) {
    return Throw(env, "sgemm: a, b and out must be Float32Arrays");
  }
  int64_t batch, batchA, batchB, M, N, K;
  bool tA, tB;
  if (!GetI64(env, args[3], &batch) || !GetI64(env, args[4], &batchA) || !GetI64(env, args[5], &batchB) ||
      !GetI64(env, args[6], &M) || !GetI64(env, args[7], &N) || !GetI64(env, args[8], &K) ||
      !GetBool(env, args[9], &tA) || !GetBool(env, args[10], &tB)) {
    return Throw(env, "sgemm: bad integer or boolean arguments");
  }
  if (batch < 0 || M < 0 || N < 0 || K < 0 || (batchA != batch && batchA != 1) ||
      (batchB != batch && batchB != 1)) {
    return Throw(env, "sgemm: bad shapes");
  }
  if (static_cast<int64_t>(la) < batchA * M * K || static_cast<int64_t>(lb) < batchB * K * N ||
      static_cast<int64_t>(lc) < batch * M * N) {
    return Throw(env, "sgemm: arrays shorter than their shapes");
  }
  if (batch == 0 || M == 0 || N == 0) return nullptr;
  if (K == 0) {
    std::memset(c, 0, sizeof(float) * batch * M * N);
    return nullptr;
  }
  const CBLAS_TRANSPOSE ta = tA ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = tB ? CblasTrans : CblasNoTrans;
  const int lda = tA ? static_cast<int>(M) : static_cast<int>(K);
  const int ldb = tB ? static_cast<int>(K) : static_cast<int>(N);
  // Note: folding a batch of A into one taller matrix (batchB == 1, no transA) would be faster for some
  // shapes, but OpenBLAS may then block the sum over K differently for a row depending on how many rows
  // come with it. One call per matrix keeps each row's result independent of the batch it came in.
  for (int64_t i = 0; i < batch; i++) {
    const float* ai = a + (batchA == 1 ? 0 : i * M * K);
    const float* bi = b + (batchB == 1 ? 0 : i * K * N);
    float* ci = c + i * M * N;
    cblas_sgemm(CblasRowMajor, ta, tb, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), 1.0f,
                ai, lda, bi, ldb, 0.0f, ci, static_cast<int>(N));
  }
  return nullptr;
}


bool GetI32Array(napi_env env, napi_value v, int32_t** data, size_t* length) {
  bool is_typed = false;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed) return false;
  napi_typedarray_type type;
  void* ptr = nullptr;
  napi_value buffer;
  size_t offset = 0;
  if (napi_get_typedarray_info(env, v, &type, length, &ptr, &buffer, &offset) != napi_ok) return false;
  if (type != napi_int32_array) return false;
  *data = static_cast<int32_t*>(ptr);
  return true;
}

// Any typed array with 4-byte elements (float32, int32, uint32): data movement kernels copy bits.
bool Get4(napi_env env, napi_value v, uint32_t** data, size_t* length) {
  bool is_typed = false;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed) return false;
  napi_typedarray_type type;
  void* ptr = nullptr;
  napi_value buffer;
  size_t offset = 0;
  if (napi_get_typedarray_info(env, v, &type, length, &ptr, &buffer, &offset) != napi_ok) return false;
  if (type != napi_float32_array && type != napi_int32_array && type != napi_uint32_array) return false;
  *data = static_cast<uint32_t*>(ptr);
  return true;
}

// ---- element-wise binary ops with broadcasting --------------------------------------------------------
// Each result is the float32 rounding of the exact result, as tfjs's JavaScript kernels give it (they
// compute in double and store into a Float32Array; for + − × ÷ that is the same as one float32 operation).
enum BinOp { kAdd = 0, kSub = 1, kMul = 2, kDiv = 3, kPow = 4, kMax = 5, kMin = 6, kSqDiff = 7 };

template <int OP>
inline float Bin(float a, float b) {
  if (OP == kAdd) return a + b;
  if (OP == kSub) return a - b;
  if (OP == kMul) return a * b;
  if (OP == kDiv) return a / b;
  if (OP == kPow) {
    // Small integer powers by multiplication in double (exact for x² and correctly rounded for x³ before the
    // final rounding to float32), else pow in double.
    const double da = static_cast<double>(a);
    if (b == 2.0f) return static_cast<float>(da * da);
    if (b == 3.0f) return static_cast<float>(da * da * da);
    if (b == 1.0f) return a;
    return static_cast<float>(std::pow(da, static_cast<double>(b)));
  }
  if (OP == kMax) return (std::isnan(a) || std::isnan(b)) ? NAN : (a > b ? a : b);
  if (OP == kMin) return (std::isnan(a) || std::isnan(b)) ? NAN : (a < b ? a : b);
  if (OP == kSqDiff) {
    const float d = a - b;
    return d * d;
  }
  return 0;
}

template <int OP>
void BinaryRows(const float* a, const float* b, float* out, const int32_t* shape, const int32_t* sa,
                const int32_t* sb, int rank, int64_t first, int64_t last);

template <int OP>
void BinaryLoop(const float* a, const float* b, float* out, const int32_t* shape, const int32_t* sa,
                const int32_t* sb, int rank) {
  const int64_t inner = rank > 0 ? shape[rank - 1] : 1;
  int64_t outer = 1;
  for (int d = 0; d < rank - 1; d++) outer *= shape[d];
  const int64_t total = outer * inner;
  const int parts = ((OP == kPow && total >= (1 << 15)) || total >= (1 << 21)) && outer >= 2 ? 8 : 1;
#pragma omp parallel for schedule(static) if (parts > 1)
  for (int p = 0; p < parts; p++) {
    const int64_t first = outer * p / parts;
    const int64_t last = outer * (p + 1) / parts;
    BinaryRows<OP>(a, b, out, shape, sa, sb, rank, first, last);
  }
}

template <int OP>
void BinaryRows(const float* a, const float* b, float* out, const int32_t* shape, const int32_t* sa,
                const int32_t* sb, int rank, int64_t first, int64_t last) {
  // Iterate over all but the last axis with an odometer; the last axis is a tight loop specialised on its
  // strides (1 or 0) so that the compiler vectorises it.
  const int64_t inner = rank > 0 ? shape[rank - 1] : 1;
  const int64_t ia = rank > 0 ? sa[rank - 1] : 0;
  const int64_t ib = rank > 0 ? sb[rank - 1] : 0;
  int64_t idx[16] = {0};
  int64_t offA = 0, offB = 0;
  {
    // Position the odometer at row `first`.
    int64_t rem = first;
    for (int d = rank - 2; d >= 0; d--) {
      idx[d] = rem % shape[d];
      rem /= shape[d];
      offA += idx[d] * sa[d];
      offB += idx[d] * sb[d];
    }
  }
  for (int64_t o = first; o < last; o++) {
    const float* pa = a + offA;
    const float* pb = b + offB;
    float* po = out + o * inner;
    if (ia == 1 && ib == 1) {
      for (int64_t i = 0; i < inner; i++) po[i] = Bin<OP>(pa[i], pb[i]);
    } else if (ia == 1 && ib == 0) {
      const float vb = pb[0];
      for (int64_t i = 0; i < inner; i++) po[i] = Bin<OP>(pa[i], vb);
    } else if (ia == 0 && ib == 1) {
      const float va = pa[0];
      for (int64_t i = 0; i < inner; i++) po[i] = Bin<OP>(va, pb[i]);
    } else {
      for (int64_t i = 0; i < inner; i++) po[i] = Bin<OP>(pa[i * ia], pb[i * ib]);
    }
    for (int d = rank - 2; d >= 0; d--) {
      idx[d]++;
      offA += sa[d];
      offB += sb[d];
      if (idx[d] < shape[d]) break;
      offA -= sa[d] * idx[d];
      offB -= sb[d] * idx[d];
      idx[d] = 0;
    }
  }
}

// binary(op, a, b, out, outShape Int32Array, aStrides Int32Array, bStrides Int32Array)
napi_value Binary(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value args[7];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, nullptr, nullptr));
  int64_t op;
  float *a, *b, *out;
  int32_t *shape, *sa, *sb;
  size_t la, lb, lo, rank, r2, r3;
  if (argc != 7 || !GetI64(env, args[0], &op) || !GetF32(env, args[1], &a, &la) || !GetF32(env, args[2], &b, &lb) ||
      !GetF32(env, args[3], &out, &lo) || !GetI32Array(env, args[4], &shape, &rank) ||
      !GetI32Array(env, args[5], &sa, &r2) || !GetI32Array(env, args[6], &sb, &r3) || r2 != rank || r3 != rank ||
      rank > 16) {
    return Throw(env, "binary: bad arguments");
  }
  int64_t size = 1, lastA = 0, lastB = 0;
  for (size_t d = 0; d < rank; d++) {
    size *= shape[d];
    lastA += static_cast<int64_t>(shape[d] - 1) * sa[d];
    lastB += static_cast<int64_t>(shape[d] - 1) * sb[d];
  }
  if (size == 0) return nullptr;
  if (static_cast<int64_t>(lo) < size || lastA >= static_cast<int64_t>(la) || lastB >= static_cast<int64_t>(lb)) {
    return Throw(env, "binary: arrays shorter than their shapes");
  }
  const int r = static_cast<int>(rank);
  switch (op) {
    case kAdd: BinaryLoop<kAdd>(a, b, out, shape, sa, sb, r); break;
    case kSub: BinaryLoop<kSub>(a, b, out, shape, sa, sb, r); break;
    case kMul: BinaryLoop<kMul>(a, b, out, shape, sa, sb, r); break;
    case kDiv: BinaryLoop<kDiv>(a, b, out, shape, sa, sb, r); break;
    case kPow: BinaryLoop<kPow>(a, b, out, shape, sa, sb, r); break;
    case kMax: BinaryLoop<kMax>(a, b, out, shape, sa, sb, r); break;
    case kMin: BinaryLoop<kMin>(a, b, out, shape, sa, sb, r); break;
    case kSqDiff: BinaryLoop<kSqDiff>(a, b, out, shape, sa, sb, r); break;
    default: return Throw(env, "binary: unknown op");
  }
  return nullptr;
}

// ---- element-wise unary ops (computed in double and rounded, as JavaScript's Math functions do) -----------
// tanh as a rational function in float32 (Eigen's and TensorFlow's fast tanh: |error| < 4e-7 against tanh in
// double over the whole float range), written branch-free so that it vectorises; glibc's tanh is ~20 ns an
// element here and is the largest element-wise cost of a GPT-2 forward pass.
void TanhF(const float* __restrict xs, float* __restrict out, int64_t n) {
  const float c = 7.90531110763549805f;
  const float a1 = 4.89352455891786e-03f, a3 = 6.37261928875436e-04f, a5 = 1.48572235717979e-05f,
              a7 = 5.12229709037114e-08f, a9 = -8.60467152213735e-11f, a11 = 2.00018790482477e-13f,
              a13 = -2.76076847742355e-16f;
  const float b0 = 4.89352518554385e-03f, b2 = 2.26843463243900e-03f, b4 = 1.18534705686654e-04f,
              b6 = 1.19825839466702e-06f;
  for (int64_t i = 0; i < n; i++) {
    const float x = xs[i];
    float xc = x < c ? x : c;
    xc = xc > -c ? xc : -c;
    const float x2 = xc * xc;
    float p = x2 * a13 + a11;
    p = p * x2 + a9;
    p = p * x2 + a7;
    p = p * x2 + a5;
    p = p * x2 + a3;
    p = p * x2 + a1;
    p = xc * p;
    float q = x2 * b6 + b4;
    q = q * x2 + b2;
    q = q * x2 + b0;
    const float r = p / q;
    // tiny |x|: tanh(x) = x in float32; NaN stays NaN
    out[i] = (std::fabs(x) < 0.0004f || x != x) ? x : r;
  }
}

// sigmoid(x) = 1 / (1 + exp(−x)) in double, rounded to float32, as tfjs's JavaScript kernel computes it, with
// exp evaluated by a branch-free double-precision routine that the compiler vectorises (glibc's exp is a
// scalar call of ~10 ns an element; SiLU's sigmoid over [rows, d_mlp] is the largest element-wise cost of a
// Llama RelP pass). exp(t): t = k·ln2 + r with |r| ≤ ln2/2, e^r by its Taylor series to degree 13 (truncation
// < 2e-17 relative), 2^k put into the exponent bits; |error| of a few double ulps, so the float32 result is
// the same as with an exactly rounded exp except when the exact value lies within ~1e-15 (relative) of a
// float32 rounding boundary. t is clamped to [−40, 110]: below, 1/(1+e^t) rounds to 1.0f anyway; above, to
// 0.0f; NaN stays NaN (both comparisons are false).
void SigmoidD(const float* __restrict xs, float* __restrict out, int64_t n) {
  const double shifter = 6755399441055744.0;  // 1.5 · 2^52: adding it rounds to an integer in the low bits
  const double log2e = 1.4426950408889634;
  const double ln2hi = 6.93147180369123816490e-01;  // fdlibm's split of ln 2
  const double ln2lo = 1.90821492927058770002e-10;
  for (int64_t i = 0; i < n; i++) {
    double t = -static_cast<double>(xs[i]);
    t = t > 110.0 ? 110.0 : t;
    t = t < -40.0 ? -40.0 : t;
    const double kd = t * log2e + shifter;
    const double k = kd - shifter;
    uint64_t kbits;
    std::memcpy(&kbits, &kd, sizeof kbits);
    const double r = (t - k * ln2hi) - k * ln2lo;
    double p = 1.0 / 6227020800.0;  // 1/13!
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // 2^k: k (an integer in [−58, 159]) sits in the low bits of kd; move it into the exponent field.
    const uint64_t sbits = (kbits - 0x4338000000000000ULL + 1023ULL) << 52;
    double scale;
    std::memcpy(&scale, &sbits, sizeof scale);
    out[i] = static_cast<float>(1.0 / (1.0 + p * scale));
  }
}

enum UnOp { kTanh = 0, kExp, kSqrt, kNeg, kSquare, kRsqrt, kLog, kAbs, kRelu, kSigmoid, kReciprocal, kErf, kSign };

napi_value Unary(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, nullptr, nullptr));
  int64_t op;
  float *x0, *out0;
  size_t lx, lo;
  if (argc != 3 || !GetI64(env, args[0], &op) || !GetF32(env, args[1], &x0, &lx) || !GetF32(env, args[2], &out0, &lo) ||
      lo < lx) {
    return Throw(env, "unary: bad arguments");
  }
  const int64_t total = static_cast<int64_t>(lx);
  // Large arrays are split into chunks over all cores (OpenMP); each element's result does not depend on
  // the split.
  const int64_t chunk = 1 << 14;
  const int64_t nchunks = (total + chunk - 1) / chunk;
  bool bad = false;
  // Only the transcendental ops are worth waking a second thread for; the rest are bound by memory.
  const bool costly = op == kTanh || op == kErf || op == kExp || op == kLog || op == kSigmoid || op == kRsqrt;
#pragma omp parallel for schedule(static) if (costly && nchunks > 2)
  for (int64_t c = 0; c < nchunks; c++) {
  float* x = x0 + c * chunk;
  float* out = out0 + c * chunk;
  const int64_t n = (c == nchunks - 1) ? total - c * chunk : chunk;
  switch (op) {
    case kTanh: TanhF(x, out, n); break;
    case kExp: for (int64_t i = 0; i < n; i++) out[i] = static_cast<float>(std::exp(static_cast<double>(x[i]))); break;
    case kSqrt: for (int64_t i = 0; i < n; i++) out[i] = std::sqrt(x[i]); break;
    case kNeg: for (int64_t i = 0; i < n; i++) out[i] = -x[i]; break;
    case kSquare: for (int64_t i = 0; i < n; i++) out[i] = x[i] * x[i]; break;
    case kRsqrt: for (int64_t i = 0; i < n; i++) out[i] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(x[i]))); break;
    case kLog: for (int64_t i = 0; i < n; i++) out[i] = static_cast<float>(std::log(static_cast<double>(x[i]))); break;
    case kAbs: for (int64_t i = 0; i < n; i++) out[i] = std::fabs(x[i]); break;
    case kRelu: for (int64_t i = 0; i < n; i++) out[i] = x[i] < 0 ? 0.0f : x[i]; break;
    case kSigmoid: SigmoidD(x, out, n); break;
    case kReciprocal: for (int64_t i = 0; i < n; i++) out[i] = static_cast<float>(1.0 / static_cast<double>(x[i])); break;
    case kErf: for (int64_t i = 0; i < n; i++) out[i] = static_cast<float>(std::erf(static_cast<double>(x[i]))); break;
    case kSign: for (int64_t i = 0; i < n; i++) out[i] = x[i] > 0 ? 1.0f : (x[i] < 0 ? -1.0f : (x[i] == 0 ? 0.0f : NAN)); break;
    default: bad = true;
  }
  }
  if (bad) return Throw(env, "unary: unknown op");
  return nullptr;
}

// ---- data movement: transpose and slice on 4-byte elements ------------------------------------------------
// transpose(x, out, shape Int32Array, perm Int32Array)
napi_value Transpose(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value args[4];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, nullptr, nullptr));
  uint32_t *x, *out;
  int32_t *shape, *perm;
  size_t lx, lo, rank, r2;
  if (argc != 4 || !Get4(env, args[0], &x, &lx) || !Get4(env, args[1], &out, &lo) ||
      !GetI32Array(env, args[2], &shape, &rank) || !GetI32Array(env, args[3], &perm, &r2) || r2 != rank ||
      rank > 16 || rank == 0) {
    return Throw(env, "transpose: bad arguments");
  }
  int64_t size = 1;
  for (size_t d = 0; d < rank; d++) size *= shape[d];
  if (static_cast<int64_t>(lx) < size || static_cast<int64_t>(lo) < size) return Throw(env, "transpose: short arrays");
  if (size == 0) return nullptr;
  // Input strides, then the strides of the input seen in output order.
  int64_t in_stride[16], st[16], oshape[16];
  in_stride[rank - 1] = 1;
  for (int d = static_cast<int>(rank) - 2; d >= 0; d--) in_stride[d] = in_stride[d + 1] * shape[d + 1];
  for (size_t d = 0; d < rank; d++) {
    st[d] = in_stride[perm[d]];
    oshape[d] = shape[perm[d]];
  }
  const int r = static_cast<int>(rank);
  const int64_t inner = oshape[r - 1];
  const int64_t sInner = st[r - 1];
  int64_t outer = size / inner;
  int64_t idx[16] = {0};
  int64_t off = 0;
  for (int64_t o = 0; o < outer; o++) {
    uint32_t* po = out + o * inner;
    const uint32_t* px = x + off;
    if (sInner == 1) {
      std::memcpy(po, px, sizeof(uint32_t) * inner);
    } else {
      for (int64_t i = 0; i < inner; i++) po[i] = px[i * sInner];
    }
    for (int d = r - 2; d >= 0; d--) {
      idx[d]++;
      off += st[d];
      if (idx[d] < oshape[d]) break;
      off -= st[d] * idx[d];
      idx[d] = 0;
    }
  }
  return nullptr;
}

// slice(x, out, shape Int32Array, begin Int32Array, size Int32Array)
napi_value Slice(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value args[5];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, nullptr, nullptr));
  uint32_t *x, *out;
  int32_t *shape, *begin, *sz;
  size_t lx, lo, rank, r2, r3;
  if (argc != 5 || !Get4(env, args[0], &x, &lx) || !Get4(env, args[1], &out, &lo) ||
      !GetI32Array(env, args[2], &shape, &rank) || !GetI32Array(env, args[3], &begin, &r2) ||
      !GetI32Array(env, args[4], &sz, &r3) || r2 != rank || r3 != rank || rank > 16 || rank == 0) {
    return Throw(env, "slice: bad arguments");
  }
  int64_t size = 1, xsize = 1;
  for (size_t d = 0; d < rank; d++) {
    if (begin[d] < 0 || sz[d] < 0 || begin[d] + sz[d] > shape[d]) return Throw(env, "slice: out of bounds");
    size *= sz[d];
    xsize *= shape[d];
  }
  if (static_cast<int64_t>(lx) < xsize || static_cast<int64_t>(lo) < size) return Throw(env, "slice: short arrays");
  if (size == 0) return nullptr;
  const int r = static_cast<int>(rank);
  int64_t stride[16];
  stride[r - 1] = 1;
  for (int d = r - 2; d >= 0; d--) stride[d] = stride[d + 1] * shape[d + 1];
  int64_t off = 0;
  for (int d = 0; d < r; d++) off += begin[d] * stride[d];
  const int64_t inner = sz[r - 1];
  const int64_t outer = size / inner;
  int64_t idx[16] = {0};
  for (int64_t o = 0; o < outer; o++) {
    std::memcpy(out + o * inner, x + off, sizeof(uint32_t) * inner);
    for (int d = r - 2; d >= 0; d--) {
      idx[d]++;
      off += stride[d];
      if (idx[d] < sz[d]) break;
      off -= stride[d] * idx[d];
      idx[d] = 0;
    }
  }
  return nullptr;
}

// copyRows(x, out, rows, len, xOffset, xStride, outOffset, outStride): row r's `len` elements from
// x[xOffset + r·xStride] to out[outOffset + r·outStride] (4-byte elements; Concat's blocks, PadV2 on the last
// axis). Bits are copied, so the result is the CPU kernel's exactly.
napi_value CopyRows(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value args[8];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, nullptr, nullptr));
  uint32_t *x, *out;
  size_t lx, lo;
  int64_t rows, len, xo, xs, oo, os;
  if (argc != 8 || !Get4(env, args[0], &x, &lx) || !Get4(env, args[1], &out, &lo) || !GetI64(env, args[2], &rows) ||
      !GetI64(env, args[3], &len) || !GetI64(env, args[4], &xo) || !GetI64(env, args[5], &xs) ||
      !GetI64(env, args[6], &oo) || !GetI64(env, args[7], &os) || rows < 0 || len < 0 || xo < 0 || xs < 0 ||
      oo < 0 || os < 0) {
    return Throw(env, "copyRows: bad arguments");
  }
  if (rows == 0 || len == 0) return nullptr;
  if (xo + (rows - 1) * xs + len > static_cast<int64_t>(lx) || oo + (rows - 1) * os + len > static_cast<int64_t>(lo)) {
    return Throw(env, "copyRows: out of bounds");
  }
  for (int64_t r = 0; r < rows; r++) std::memcpy(out + oo + r * os, x + xo + r * xs, sizeof(uint32_t) * len);
  return nullptr;
}

// ---- reductions over the innermost axis (sums in double, as tfjs's JavaScript kernels do) -----------------
enum RedOp { kSum = 0, kMaxR = 1, kMinR = 2, kMean = 3 };

// reduce(op, x, out, outer, inner)
napi_value Reduce(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value args[5];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, nullptr, nullptr));
  int64_t op, outer, inner;
  float *x, *out;
  size_t lx, lo;
  if (argc != 5 || !GetI64(env, args[0], &op) || !GetF32(env, args[1], &x, &lx) || !GetF32(env, args[2], &out, &lo) ||
      !GetI64(env, args[3], &outer) || !GetI64(env, args[4], &inner) || outer < 0 || inner < 0 ||
      static_cast<int64_t>(lx) < outer * inner || static_cast<int64_t>(lo) < outer) {
    return Throw(env, "reduce: bad arguments");
  }
  for (int64_t o = 0; o < outer; o++) {
    const float* p = x + o * inner;
    if (op == kSum || op == kMean) {
      double s = 0;
      if (op == kMean) {
        // tfjs's Mean divides each element by the count (in float32) before summing.
        const float n = static_cast<float>(inner);
        for (int64_t i = 0; i < inner; i++) s += static_cast<double>(p[i] / n);
      } else {
        for (int64_t i = 0; i < inner; i++) s += static_cast<double>(p[i]);
      }
      out[o] = static_cast<float>(s);
    } else {
      float m = inner > 0 ? p[0] : 0.0f;
      for (int64_t i = 1; i < inner; i++) {
        const float v = p[i];
        if (std::isnan(v)) {
          m = v;
          break;
        }
        if (op == kMaxR ? v > m : v < m) m = v;
      }
      out[o] = m;
    }
  }
  return nullptr;
}

// softmax(logits, out, rows, cols): over the last axis, as tfjs composes it (max, subtract, exp, sum, divide).
napi_value Softmax(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value args[4];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, nullptr, nullptr));
  int64_t rows, cols;
  float *x, *out;
  size_t lx, lo;
  if (argc != 4 || !GetF32(env, args[0], &x, &lx) || !GetF32(env, args[1], &out, &lo) || !GetI64(env, args[2], &rows) ||
      !GetI64(env, args[3], &cols) || rows < 0 || cols < 0 || static_cast<int64_t>(lx) < rows * cols ||
      static_cast<int64_t>(lo) < rows * cols) {
    return Throw(env, "softmax: bad arguments");
  }
  for (int64_t r = 0; r < rows; r++) {
    const float* p = x + r * cols;
    float* q = out + r * cols;
    float m = cols > 0 ? p[0] : 0.0f;
    for (int64_t i = 1; i < cols; i++) {
      if (std::isnan(p[i])) {
        m = p[i];
        break;
      }
      if (p[i] > m) m = p[i];
    }
    double s = 0;
    for (int64_t i = 0; i < cols; i++) {
      const float e = static_cast<float>(std::exp(static_cast<double>(p[i] - m)));
      q[i] = e;
      s += static_cast<double>(e);
    }
    const float sf = static_cast<float>(s);
    for (int64_t i = 0; i < cols; i++) q[i] = q[i] / sf;
  }
  return nullptr;
}


bool GetU8(napi_env env, napi_value v, uint8_t** data, size_t* length) {
  bool is_typed = false;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed) return false;
  napi_typedarray_type type;
  void* ptr = nullptr;
  napi_value buffer;
  size_t offset = 0;
  if (napi_get_typedarray_info(env, v, &type, length, &ptr, &buffer, &offset) != napi_ok) return false;
  if (type != napi_uint8_array) return false;
  *data = static_cast<uint8_t*>(ptr);
  return true;
}

// compare(op, a, b, out Uint8Array, shape, stridesA, stridesB): 0 >, 1 >=, 2 <, 3 <=, 4 ==, 5 !=
napi_value Compare(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value args[7];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, nullptr, nullptr));
  int64_t op;
  float *a, *b;
  uint8_t* out;
  int32_t *shape, *sa, *sb;
  size_t la, lb, lo, rank, r2, r3;
  if (argc != 7 || !GetI64(env, args[0], &op) || !GetF32(env, args[1], &a, &la) || !GetF32(env, args[2], &b, &lb) ||
      !GetU8(env, args[3], &out, &lo) || !GetI32Array(env, args[4], &shape, &rank) ||
      !GetI32Array(env, args[5], &sa, &r2) || !GetI32Array(env, args[6], &sb, &r3) || r2 != rank || r3 != rank ||
      rank > 16 || rank == 0 || op < 0 || op > 5) {
    return Throw(env, "compare: bad arguments");
  }
  int64_t size = 1, lastA = 0, lastB = 0;
  for (size_t d = 0; d < rank; d++) {
    size *= shape[d];
    lastA += static_cast<int64_t>(shape[d] - 1) * sa[d];
    lastB += static_cast<int64_t>(shape[d] - 1) * sb[d];
  }
  if (size == 0) return nullptr;
  if (static_cast<int64_t>(lo) < size || lastA >= static_cast<int64_t>(la) || lastB >= static_cast<int64_t>(lb)) {
    return Throw(env, "compare: arrays shorter than their shapes");
  }
  const int r = static_cast<int>(rank);
  const int64_t inner = shape[r - 1];
  const int64_t ia = sa[r - 1], ib = sb[r - 1];
  const int64_t outer = size / inner;
  int64_t idx[16] = {0};
  int64_t offA = 0, offB = 0;
  for (int64_t o = 0; o < outer; o++) {
    const float* pa = a + offA;
    const float* pb = b + offB;
    uint8_t* po = out + o * inner;
    switch (op) {
      case 0: for (int64_t i = 0; i < inner; i++) po[i] = pa[i * ia] > pb[i * ib]; break;
      case 1: for (int64_t i = 0; i < inner; i++) po[i] = pa[i * ia] >= pb[i * ib]; break;
      case 2: for (int64_t i = 0; i < inner; i++) po[i] = pa[i * ia] < pb[i * ib]; break;
      case 3: for (int64_t i = 0; i < inner; i++) po[i] = pa[i * ia] <= pb[i * ib]; break;
      case 4: for (int64_t i = 0; i < inner; i++) po[i] = pa[i * ia] == pb[i * ib]; break;
      default: for (int64_t i = 0; i < inner; i++) po[i] = pa[i * ia] != pb[i * ib]; break;
    }
    for (int d = r - 2; d >= 0; d--) {
      idx[d]++;
      offA += sa[d];
      offB += sb[d];
      if (idx[d] < shape[d]) break;
      offA -= sa[d] * idx[d];
      offB -= sb[d] * idx[d];
      idx[d] = 0;
    }
  }
  return nullptr;
}

template <typename T>
void TileImpl(const T* x, T* out, const int32_t* shape, const int32_t* reps, int r, const int64_t* oshape,
              int64_t size) {
  int64_t stride[16];
  stride[r - 1] = 1;
  for (int d = r - 2; d >= 0; d--) stride[d] = stride[d + 1] * shape[d + 1];
  const int64_t inner = oshape[r - 1];
  const int64_t xin = shape[r - 1];
  const int64_t outer = size / inner;
  int64_t idx[16] = {0};
  for (int64_t o = 0; o < outer; o++) {
    int64_t off = 0;
    for (int d = 0; d < r - 1; d++) off += (idx[d] % shape[d]) * stride[d];
    T* po = out + o * inner;
    if (xin == 1) {
      const T v = x[off];
      for (int64_t i = 0; i < inner; i++) po[i] = v;
    } else {
      for (int64_t k = 0; k < reps[r - 1]; k++) std::memcpy(po + k * xin, x + off, sizeof(T) * xin);
    }
    for (int d = r - 2; d >= 0; d--) {
      if (++idx[d] < oshape[d]) break;
      idx[d] = 0;
    }
  }
}

// tile(x, out, shape Int32Array, reps Int32Array): 4-byte elements, or bytes (bool) when both are Uint8Arrays
napi_value Tile(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value args[4];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, nullptr, nullptr));
  uint32_t *x = nullptr, *out = nullptr;
  uint8_t *x8 = nullptr, *out8 = nullptr;
  int32_t *shape, *reps;
  size_t lx, lo, rank, r2;
  const bool bytes = argc == 4 && GetU8(env, args[0], &x8, &lx) && GetU8(env, args[1], &out8, &lo);
  if (argc != 4 || (!bytes && (!Get4(env, args[0], &x, &lx) || !Get4(env, args[1], &out, &lo))) ||
      !GetI32Array(env, args[2], &shape, &rank) || !GetI32Array(env, args[3], &reps, &r2) || r2 != rank ||
      rank > 16 || rank == 0) {
    return Throw(env, "tile: bad arguments");
  }
  const int r = static_cast<int>(rank);
  int64_t oshape[16];
  int64_t size = 1, xsize = 1;
  for (int d = 0; d < r; d++) {
    if (shape[d] < 0 || reps[d] < 0) return Throw(env, "tile: negative sizes");
    oshape[d] = static_cast<int64_t>(shape[d]) * reps[d];
    size *= oshape[d];
    xsize *= shape[d];
  }
  if (static_cast<int64_t>(lx) < xsize || static_cast<int64_t>(lo) < size) return Throw(env, "tile: short arrays");
  if (size == 0) return nullptr;
  if (bytes) TileImpl<uint8_t>(x8, out8, shape, reps, r, oshape, size);
  else TileImpl<uint32_t>(x, out, shape, reps, r, oshape, size);
  return nullptr;
}

// select(cond Uint8Array, t, e, out): same sizes, 4-byte elements
napi_value Select(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value args[4];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, nullptr, nullptr));
  uint8_t* c;
  uint32_t *t, *e, *out;
  size_t lc, lt, le, lo;
  if (argc != 4 || !GetU8(env, args[0], &c, &lc) || !Get4(env, args[1], &t, &lt) || !Get4(env, args[2], &e, &le) ||
      !Get4(env, args[3], &out, &lo) || lt < lc || le < lc || lo < lc) {
    return Throw(env, "select: bad arguments");
  }
  const int64_t n = static_cast<int64_t>(lc);
  for (int64_t i = 0; i < n; i++) out[i] = c[i] == 1 ? t[i] : e[i];
  return nullptr;
}

napi_value SetThreads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, nullptr, nullptr));
  int64_t n = 0;
  if (argc != 1 || !GetI64(env, args[0], &n) || n < 1) return Throw(env, "setThreads expects a positive integer");
  openblas_set_num_threads(static_cast<int>(n));
  // The element-wise kernels' OpenMP loops use the same number of threads as the matrix products.
  omp_set_num_threads(static_cast<int>(n));
  return nullptr;
}

napi_value Info(napi_env env, napi_callback_info /*info*/) {
  napi_value obj, v;
  NAPI_CALL(env, napi_create_object(env, &obj));
  NAPI_CALL(env, napi_create_int32(env, openblas_get_num_threads(), &v));
  NAPI_CALL(env, napi_set_named_property(env, obj, "threads", v));
  const char* config = openblas_get_config();
  NAPI_CALL(env, napi_create_string_utf8(env, config ? config : "", NAPI_AUTO_LENGTH, &v));
  NAPI_CALL(env, napi_set_named_property(env, obj, "blas", v));
  const char* core = openblas_get_corename();
  NAPI_CALL(env, napi_create_string_utf8(env, core ? core : "", NAPI_AUTO_LENGTH, &v));
  NAPI_CALL(env, napi_set_named_property(env, obj, "core", v));
  return obj;
}

}  // namespace

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  // Tensor arrays of a few MB are allocated and freed hundreds of times a pass. By default glibc serves
  // them with fresh mmaps (page faults and zeroing every time); keeping them on the heap and not trimming
  // it reuses the same pages. RELP_NATIVE_MALLOC=default leaves glibc's settings alone.
  const char* m = std::getenv("RELP_NATIVE_MALLOC");
  if (m == nullptr || std::strcmp(m, "default") != 0) {
    mallopt(M_MMAP_THRESHOLD, 512 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
  }
  napi_property_descriptor props[] = {
      {"sgemm", nullptr, Sgemm, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"binary", nullptr, Binary, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"unary", nullptr, Unary, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"transpose", nullptr, Transpose, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"slice", nullptr, Slice, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"copyRows", nullptr, CopyRows, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"reduce", nullptr, Reduce, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"softmax", nullptr, Softmax, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"compare", nullptr, Compare, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"tile", nullptr, Tile, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"select", nullptr, Select, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setThreads", nullptr, SetThreads, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"info", nullptr, Info, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}
