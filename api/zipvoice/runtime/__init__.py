"""ZipVoice on other runtimes: ONNX Runtime (:mod:`.onnx_backend`) and TensorRT (:mod:`.trt_backend`).

Only the two network calls change (text encoder, one guided decoder step); tokenizer, features,
the Euler sampler, chunking and the vocoder are the PyTorch engine's.
"""
