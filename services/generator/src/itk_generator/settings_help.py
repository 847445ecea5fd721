"""What each of the generator's settings does, for docs/configuration.md.

The generator's settings are read where they are used (the service, each backend, the provider
clients); their names and defaults come from those reads, and scripts/gen_config_docs.py puts
them beside these descriptions. Its --check fails when the code reads a variable missing here or
this names one no code reads.
"""

from __future__ import annotations

SETTINGS_HELP: dict[str, str | tuple[str, ...]] = {
    "BIND_HOST": "Listen address.",
    "GRPC_PORT": "gRPC port.",
    "GENERATOR_BACKEND": (
        "`preview`",
        "`preview` (CPU, no weights), `infinitetalk`, or a remote GPU provider: `runpod`, `beam`, `modal`.",
    ),
    "GENERATOR_CAPACITY": (
        "`1` (`4` for providers)",
        "Chunks rendered at once (for providers: provider jobs in flight); one more is refused at once with "
        "RESOURCE_EXHAUSTED.",
    ),
    "TEMP_DIR": (
        "system temp",
        "Per-chunk scratch files.",
    ),
    "GENERATOR_PRESETS": (
        "all the backend serves",
        "The presets this generator serves (`quality,fast` for weights that are not step- and guidance-distilled, "
        "say), reported in GetInfo; the gateway refuses a job asking for one no generator of its pool serves. "
        "Remote providers serve `quality` only (the Infinitetalk REST API takes no preset).",
    ),
    "PREVIEW_COST_PER_AUDIO_SEC": (
        "`preview` only: a chunk takes at least this many seconds per second of audio (a stand-in for a GPU's "
        "fixed cost, for benchmarks and fault tests)."
    ),
    "PREVIEW_FACE_CASCADE": (
        "OpenCV's frontal face cascade",
        "`preview` only: the Haar cascade that finds the face.",
    ),
    "MODEL_DIR": "`infinitetalk`: the model directory written by `itk-download-weights`.",
    "OFFLOAD_IDLE_SEC": (
        "`0` (never)",
        "`infinitetalk`: after this long without a chunk, move the weights to pinned host memory and give the GPU "
        "memory back; the next chunk copies them back first (no file read, nothing recompiled). Otherwise the "
        "models stay on the GPU between chunks and jobs; a job's `force_offload` only goes to RunPod and Beam.",
    ),
    "INFINITETALK_WARMUP_BUCKETS": (
        "`480p:832x480,480p:480x832` on a GPU, `off` on the CPU",
        "`infinitetalk`: resolution buckets (`family:WIDTHxHEIGHT`) compiled and run once before the generator "
        "reports SERVING, so the first job runs at the steady speed; listed in GetInfo.buckets.",
    ),
    "INFINITETALK_PRESET": (
        "`quality` (40 steps, 3 forwards a step), `fast` (8 steps, 2 forwards; for a step-distilled LoRA) or "
        "`turbo` (4 steps, 1 forward; for LightX2V's step- and guidance-distilled weights)."
    ),
    "LORA_PATH": "A LoRA merged into the DiT at load (FusioniX, lightx2v).",
    "LORA_SCALE": "Scale of the merged LoRA.",
    "DEVICE": (
        "`cuda` when present, else `cpu`",
        "Where the DiT runs.",
    ),
    "DTYPE": (
        "`bf16` on GPU",
        "Precision of the DiT: `bf16`, `fp16`, `fp32` or `fp8` (e4m3 GEMMs and self-attention, the rest bf16; "
        "compute capability 8.9+).",
    ),
    "FP8_ACTIVATION_SCALING": "`DTYPE=fp8`: activation scales per token (`token`) or one per tensor (`tensor`).",
    "FP8_ATTENTION": (
        "`DTYPE=fp8`: self-attention through cuDNN's FP8 attention where it runs; `on` makes its absence a "
        "start-up error, `off` keeps it in bf16."
    ),
    "DIT_PATH": "A whole DiT in one safetensors file instead of the Wan2.1 shards (LightX2V's distilled models).",
    "VAE_DTYPE": "`fp32` or `bf16`.",
    "VAE_TILING": "Decode and encode in spatial tiles: less memory at 720p.",
    "VAE_FUSED_NORMS": (
        "`true` on GPU",
        "Each VAE norm and the SiLU after it as one function in fp32, rounded once (compiled on a GPU): less "
        "memory traffic, the same frames to rounding.",
    ),
    "VAE_TIME_CHUNK": (
        "Latent frames' worth per VAE decoder and encoder call after the first (1: one at a time, as "
        "diffusers); the same frames to rounding. Not with `VAE_TILING`."
    ),
    "GUIDANCE_BATCH": "Run a step's guidance forwards as one batched forward.",
    "BLOCK_OFFLOAD": "Keep DiT blocks in CPU memory and stream them to the GPU (48 GB cards).",
    "ATTENTION_BACKEND": "`auto` (flash-attn when installed, else SDPA), `sdpa` or `flash`.",
    "INFINITETALK_COMPILE": (
        "`elementwise` on GPU",
        "`off`, `elementwise` (norms, modulation, RoPE, residuals, FP8 quantizers) or `blocks` (every block's "
        "whole forward).",
    ),
    "INFINITETALK_CLIP_FRAMES": (
        "Frames per clip (4n+1); the gateway refuses a generator whose grid differs from its CLIP_FRAMES."
    ),
    "INFINITETALK_SIZE": "`WxH` to force the generated size instead of the resolution buckets (small test models).",
    "COLOR_CORRECTION_STRENGTH": (
        "Strength of the colour correction toward the reference image, for jobs that keep it on."
    ),
    "TEXT_ENCODER_DEVICE": (
        "`DEVICE` (CPU with `BLOCK_OFFLOAD`)",
        "Where umT5 runs.",
    ),
    "PARALLEL_DEVICES": "`infinitetalk`: GPUs each chunk is rendered across, one process per GPU from `DEVICE` on.",
    "PARALLEL_MODE": "How the GPUs share a step: `auto`, `guidance` or `sequence` (Ulysses).",
    "INFINITETALK_ADAPTERS": (
        "every adapter in `MODEL_DIR`",
        "InfiniteTalk adapters to load: `single` (one person), `multi` (two people; `itk-download-weights --multi`) "
        "or `single,multi` (both, switched per chunk; 5.0 GB more in bf16). The generator serves their person counts.",
    ),
    "PROVIDER_REQUEST_TIMEOUT_SEC": (
        "Providers: timeout of one HTTP call (connect, each read); a submit's answer is awaited until the "
        "chunk's deadline instead."
    ),
    "PROVIDER_RETRIES": (
        "Providers: transport errors, 429 and 5xx are retried this many times; a submit only when the provider "
        "surely did not act on it (no connection, 429, 503)."
    ),
    "PROVIDER_RETRY_BACKOFF_SEC": "Providers: first pause before a retry; doubles per attempt.",
    "PROVIDER_POLL_INTERVAL_SEC": (
        "`5` (Beam: `BEAM_POLL_INTERVAL_MS`)",
        "Providers: pause between status polls.",
    ),
    "PROVIDER_CHUNK_TIMEOUT_SEC": (
        "`3600` (Beam: `BEAM_POLL_TIMEOUT_SEC`)",
        "Providers: a chunk whose provider job has not finished this long after submission fails; its job is "
        "cancelled.",
    ),
    "PROVIDER_MAX_PAD_SEC": "Providers: how much shorter than the chunk's audio a provider's video may be.",
    "PROVIDER_MAX_IMAGE_SIDE": "Providers: a portrait with a longer side is scaled down to it before it is sent.",
    "RUNPOD_API_KEY": "`runpod`: API key (required).",
    "RUNPOD_ENDPOINT_ID": "`runpod`: serverless endpoint id (required).",
    "RUNPOD_BASE_URL": "`runpod`: API base URL.",
    "BEAM_TOKEN": "`beam`: API token (required).",
    "BEAM_QUEUE_URL": "`beam`: the task queue's URL (required).",
    "BEAM_API_BASE_URL": "`beam`: API base URL (task status and cancel).",
    "BEAM_POLL_INTERVAL_MS": "`beam`: the Infinitetalk REST API's name for the poll interval, in ms.",
    "BEAM_POLL_TIMEOUT_SEC": "`beam`: the Infinitetalk REST API's name for the chunk timeout.",
    "MODAL_SUBMIT_URL": "`modal`: the app's submit URL (required).",
    "MODAL_RESULT_URL": "`modal`: the app's result URL (required).",
    "MODAL_TOKEN_ID": "`modal`: proxy auth token id, sent as `Modal-Key` (required).",
    "MODAL_TOKEN_SECRET": "`modal`: proxy auth token secret, sent as `Modal-Secret` (required).",
    "MODAL_CANCEL_URL": "`modal`: an endpoint that cancels a call; unset: a cancelled chunk only stops polling.",
    "S3_BUCKET": "`modal`: bucket where each chunk's inputs are staged for the app to fetch (required).",
    "S3_REGION": "`modal`: the staging bucket's region.",
    "S3_ENDPOINT_URL": "`modal`: endpoint of an S3-compatible store.",
    "PROVIDER_INPUT_PREFIX": "`modal`: key prefix of staged inputs.",
    "PROVIDER_INPUT_URL_EXPIRY_SEC": "`modal`: lifetime of the staged inputs' presigned URLs.",
}
