// Paddle custom operator "vinocr_dwconv": depthwise 2-D convolution (groups == channels,
// multiplier 1), float32, NCHW, CPU, with its gradient op (grad input, weight and bias).
// Kernels: depthwise_conv.h. Built on first use by vinocr/ops/depthwise.py.
//
// Inputs X [N, C, H, W], W [C, 1, K, K] (K odd), B [C]; attributes: strides sh, sw in {1, 2},
// paddings ph, pw in [0, K-1], nthreads (OpenMP threads for this call, >= 1).
#include <vector>

#include "depthwise_conv.h"
#include "paddle/extension.h"

namespace {

void check_inputs(const paddle::Tensor& x, const paddle::Tensor& w, int sh, int sw, int ph,
                  int pw) {
  PD_CHECK(x.place() == paddle::CPUPlace(), "vinocr_dwconv: CPU tensors only");
  PD_CHECK(x.dtype() == paddle::DataType::FLOAT32 && w.dtype() == paddle::DataType::FLOAT32,
           "vinocr_dwconv: float32 only");
  PD_CHECK(x.shape().size() == 4 && w.shape().size() == 4, "vinocr_dwconv: 4-D tensors only");
  const int64_t C = x.shape()[1], K = w.shape()[2];
  PD_CHECK(w.shape()[0] == C && w.shape()[1] == 1 && w.shape()[3] == K,
           "vinocr_dwconv: weight must be [C, 1, K, K]");
  PD_CHECK(K % 2 == 1 && K <= vinocr_dw::KMAX, "vinocr_dwconv: odd kernel size <= 15 only");
  PD_CHECK((sh == 1 || sh == 2) && (sw == 1 || sw == 2), "vinocr_dwconv: strides 1 or 2 only");
  PD_CHECK(ph >= 0 && pw >= 0 && ph < K && pw < K, "vinocr_dwconv: padding in [0, K-1] only");
  PD_CHECK(x.shape()[2] + 2 * ph >= K && x.shape()[3] + 2 * pw >= K,
           "vinocr_dwconv: input smaller than the kernel");
}

vinocr_dw::Geometry geometry(const paddle::Tensor& x, const paddle::Tensor& w, int sh, int sw,
                             int ph, int pw) {
  const auto& s = x.shape();
  return vinocr_dw::Geometry(static_cast<int>(s[0]), static_cast<int>(s[1]),
                             static_cast<int>(s[2]), static_cast<int>(s[3]),
                             static_cast<int>(w.shape()[2]), sh, sw, ph, pw);
}

}  // namespace

std::vector<paddle::Tensor> DwConvForward(const paddle::Tensor& x, const paddle::Tensor& w,
                                          const paddle::Tensor& b, int sh, int sw, int ph, int pw,
                                          int nthreads) {
  check_inputs(x, w, sh, sw, ph, pw);
  PD_CHECK(b.numel() == x.shape()[1], "vinocr_dwconv: bias must have C elements");
  const paddle::Tensor xc = x.is_contiguous() ? x : x.contiguous();
  const paddle::Tensor wc = w.is_contiguous() ? w : w.contiguous();
  const paddle::Tensor bc = b.is_contiguous() ? b : b.contiguous();
  const vinocr_dw::Geometry g = geometry(xc, wc, sh, sw, ph, pw);
  auto y = paddle::empty({g.N, g.C, g.Ho, g.Wo}, paddle::DataType::FLOAT32, paddle::CPUPlace());
  vinocr_dw::forward(xc.data<float>(), wc.data<float>(), bc.data<float>(), y.data<float>(), g,
                     nthreads > 0 ? nthreads : 1);
  return {y};
}

std::vector<paddle::Tensor> DwConvBackward(const paddle::Tensor& x, const paddle::Tensor& w,
                                           const paddle::Tensor& gy, int sh, int sw, int ph,
                                           int pw, int nthreads) {
  check_inputs(x, w, sh, sw, ph, pw);
  const paddle::Tensor xc = x.is_contiguous() ? x : x.contiguous();
  const paddle::Tensor wc = w.is_contiguous() ? w : w.contiguous();
  const paddle::Tensor gyc = gy.is_contiguous() ? gy : gy.contiguous();
  const vinocr_dw::Geometry g = geometry(xc, wc, sh, sw, ph, pw);
  PD_CHECK(gyc.shape().size() == 4 && gyc.shape()[0] == g.N && gyc.shape()[1] == g.C &&
               gyc.shape()[2] == g.Ho && gyc.shape()[3] == g.Wo,
           "vinocr_dwconv: output gradient has the wrong shape");
  auto gx = paddle::empty(xc.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
  auto gw = paddle::empty(wc.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
  auto gb = paddle::empty({g.C}, paddle::DataType::FLOAT32, paddle::CPUPlace());
  vinocr_dw::backward(xc.data<float>(), wc.data<float>(), gyc.data<float>(), gx.data<float>(),
                      gw.data<float>(), gb.data<float>(), g, nthreads > 0 ? nthreads : 1);
  return {gx, gw, gb};
}

std::vector<std::vector<int64_t>> DwConvInferShape(const std::vector<int64_t>& x,
                                                   const std::vector<int64_t>& w,
                                                   const std::vector<int64_t>& b, int sh, int sw,
                                                   int ph, int pw, int nthreads) {
  const int64_t K = w[2];
  const int64_t ho = x[2] < 0 ? -1 : (x[2] + 2 * ph - K) / sh + 1;
  const int64_t wo = x[3] < 0 ? -1 : (x[3] + 2 * pw - K) / sw + 1;
  return {{x[0], x[1], ho, wo}};
}

std::vector<paddle::DataType> DwConvInferDtype(const paddle::DataType& x,
                                               const paddle::DataType& w,
                                               const paddle::DataType& b) {
  return {x};
}

PD_BUILD_OP(vinocr_dwconv)
    .Inputs({"X", "W", "B"})
    .Outputs({"Out"})
    .Attrs({"sh: int", "sw: int", "ph: int", "pw: int", "nthreads: int"})
    .SetKernelFn(PD_KERNEL(DwConvForward))
    .SetInferShapeFn(PD_INFER_SHAPE(DwConvInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(DwConvInferDtype));

PD_BUILD_GRAD_OP(vinocr_dwconv)
    .Inputs({"X", "W", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("W"), paddle::Grad("B")})
    .Attrs({"sh: int", "sw: int", "ph: int", "pw: int", "nthreads: int"})
    .SetKernelFn(PD_KERNEL(DwConvBackward));
