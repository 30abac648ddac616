
golden02-pymc
mufloat64
sigma_log__float64*
inference_librarypymc2
sampler_0__divergingbool2 
sampler_0__model_logpfloat642
sampler_0__warningstr2
sampler_1__acceptfloat642
sampler_2__acceptfloat642
	in_warmupbool