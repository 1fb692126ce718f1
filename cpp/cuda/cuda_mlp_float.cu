// CudaMlp<float> and the kernels it launches (see cuda_mlp_impl.cuh).
#include "cuda_mlp_impl.cuh"

template class fusedmlp::cuda::CudaMlp<float>;
