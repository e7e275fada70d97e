"""ZipVoice on other runtimes: ONNX Runtime (:mod:`.onnx_backend`, torch-free :mod:`.ort_numpy`) and
TensorRT (:mod:`.trt_backend`); :mod:`.select` decides which one (and the device) serves a variant.

Only the two network calls change (text encoder, one guided decoder step); tokenizer, features,
the Euler sampler's schedule, chunking and the vocoder are shared.
"""
