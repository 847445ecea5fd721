"""Optional: the whole generation loop against the reference's InfiniteTalkPipeline.generate_infinitetalk.

Runs only when INFINITETALK_REFERENCE_DIR points at a local checkout of github.com/MeiGen-AI/InfiniteTalk
(and einops and scikit-image, the reference's own dependencies, are importable); the reference is
imported from there, never copied here. Both loops run on the CPU in fp32 with the same tiny random
DiT and VAE weights, the same image, prompt encodings, CLIP features and audio features, and the
same noise per clip (the reference draws its clip noise from torch.randn, which the test feeds with
ours: seed, lane and the clip's first frame). Every frame must agree within one grey level, over
four clips (three continuing from motion frames) with colour correction on:
- the quality guidance (3 forwards a step) with TeaCache,
- the fast guidance (2 forwards a step),
- the same recording as one lane cut into three pieces on the clip grid, each continuing from the
  previous piece's motion frames, against the reference's single stream.
Two people (the reference's multi-person path, on the same tiny weights as its multi-person model):
two audio tracks, with and without boxes, `para` (both tracks speak throughout) and `add` (person 1
speaks, then person 2: each track silent while the other speaks, the aligned tracks the reference
makes of `add` before generating), on a non-square source image whose masks the reference fits
itself, with the quality guidance (its no-audio branch runs one person's silence). There the
reference's motion frames are rounded to float16 as ours are (the product's motion format, which
lets a lane cut into pieces render like one stream): on random weights the speaker labels'
argmax amplifies that rounding, alone, to up to 2 grey levels on a few pixels of the continuing
clip, while with the same motion frames the two loops agree to a few hundredths of a grey level.
Where we differ on purpose it says so: TeaCache with 2 forwards. The reference's TeaCache counts
forwards modulo 3, so with 2 forwards a step it hands one branch's cache to the other; ours keeps a
cache per branch, which is checked on its own (equal to no cache while warming up, and skipping
blocks after it).

Run it as:
    INFINITETALK_REFERENCE_DIR=/path/to/InfiniteTalk .venv/bin/pytest tests/infinitetalk/test_loop_parity.py
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import inspect
import itertools
import math
import os
import sys
import types
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from itk_common.constants import SAMPLES_PER_FRAME
from itk_generator.infinitetalk.attention import Attention
from itk_generator.infinitetalk.config import DiTConfig
from itk_generator.infinitetalk.dit import MULTI, InfiniteTalkDiT, load_strict
from itk_generator.infinitetalk.person_regions import generated_person_masks
from itk_generator.infinitetalk.pipeline import (
    DEFAULT_NEGATIVE_PROMPT,
    ChunkRequest,
    InfiniteTalkPipeline,
    clip_noise,
    plan_clips,
    video_to_frames,
)
from itk_generator.infinitetalk.sampling import TEACACHE_COEFFICIENTS, SamplingPlan
from itk_generator.infinitetalk.vae import LATENT_MEAN, LATENT_STD, WanVAE

REFERENCE = Path(os.environ.get("INFINITETALK_REFERENCE_DIR", "/nonexistent"))
pytestmark = pytest.mark.skipif(
    not (REFERENCE / "wan" / "multitalk.py").is_file()
    or importlib.util.find_spec("einops") is None
    or importlib.util.find_spec("skimage") is None,
    reason="set INFINITETALK_REFERENCE_DIR to a MeiGen-AI/InfiniteTalk checkout (and install einops, scikit-image)",
)

SIZE = 32
CLIP_FRAMES = 21  # 6 latent frames: the reference's layout at a size the CPU runs in seconds
MOTION_FRAMES = 9
STRIDE = CLIP_FRAMES - MOTION_FRAMES
FRAMES = CLIP_FRAMES + 2 * STRIDE + 5  # four clips, the last one cut
SEED = 1234
TEXT_LEN = 16
# The reference's audio projection is fixed to 12 layers x 768 channels and its CLIP width to 1280.
CONFIG = DiTConfig(dim=64, ffn_dim=128, freq_dim=32, text_dim=48, text_len=TEXT_LEN, num_heads=4, num_layers=2,
                   audio_intermediate_dim=32, audio_output_dim=24, audio_context_tokens=4)
QUALITY = SamplingPlan(steps=6, shift=5.0, text_guidance=5.0, audio_guidance=4.0)
FAST = SamplingPlan(steps=6, shift=2.0, text_guidance=1.0, audio_guidance=2.0)
# So high that every step after the warm-up reuses the cached residual: on random weights the
# rescaled change between steps is in the thousands, far above the 0.2 real weights use.
TEACACHE_THRESHOLD = 1e9


# -- the reference, imported with stand-ins for what a CPU run does not need -------------------------


def _module(patch: pytest.MonkeyPatch, name: str, **attrs: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    module.__path__ = []  # type: ignore[attr-defined]
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    patch.setitem(sys.modules, name, module)
    return module


def _load(patch: pytest.MonkeyPatch, name: str, relative: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, REFERENCE / relative)
    module = importlib.util.module_from_spec(spec)
    patch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def _sdpa(q, k, v, *_args, **_kwargs):
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


@pytest.fixture(scope="module")
def reference() -> Iterator[types.SimpleNamespace]:
    import diffusers.configuration_utils  # noqa: F401 - imported before any stand-in exists
    import diffusers.models.modeling_utils as modeling_utils
    import skimage.color  # noqa: F401

    with pytest.MonkeyPatch.context() as patch:
        # wan/multitalk.py imports inspect.ArgSpec, which Python 3.11 removed (it is not used).
        patch.setattr(inspect, "ArgSpec", namedtuple("ArgSpec", "args varargs keywords defaults"), raising=False)
        for name in ("no_init_weights", "ContextManagers"):
            if not hasattr(modeling_utils, name):
                patch.setattr(modeling_utils, name, None, raising=False)
        for name in ("wan", "wan.modules", "wan.utils", "wan.distributed", "src", "xfuser", "xfuser.core",
                     "optimum", "optimum.quanto.nn"):
            _module(patch, name)
        _module(patch, "xfuser.core.distributed", get_sequence_parallel_rank=lambda: 0,
                get_sequence_parallel_world_size=lambda: 1, get_sp_group=lambda: None)
        _module(patch, "xformers.ops", memory_efficient_attention=lambda q, k, v, **_: _sdpa(q, k, v))
        _module(patch, "xformers", ops=sys.modules["xformers.ops"])
        for optional in ("imageio", "soundfile", "torchvision", "accelerate", "loguru"):
            if importlib.util.find_spec(optional) is None:
                _module(patch, optional)
        _module(patch, "torchvision.transforms")
        _module(patch, "optimum.quanto", quantize=None, freeze=None, qint8=None, requantize=None)
        _module(patch, "optimum.quanto.nn.qlinear")
        _module(patch, "src.vram_management", AutoWrappedQLinear=None, AutoWrappedLinear=None,
                AutoWrappedModule=None, enable_vram_management=None)
        _module(patch, "wan.distributed.fsdp", shard_model=None)
        _module(patch, "wan.wan_lora", WanLoraWrapper=None)
        _module(patch, "wan.utils.utils", convert_video_to_h264=None, extract_specific_frames=None,
                get_video_codec=None)
        utils = _load(patch, "wan.utils.multitalk_utils", "wan/utils/multitalk_utils.py")
        _load(patch, "wan.modules.attention", "wan/modules/attention.py")
        model = _load(patch, "wan.modules.multitalk_model", "wan/modules/multitalk_model.py")
        model.flash_attention = _sdpa
        model.get_attn_map_with_target = CountingCalls(utils.get_attn_map_with_target)
        patch.setattr(torch.cuda, "current_device", lambda: "cpu")  # a default argument in t5.py
        for name in ("tokenizers", "xlm_roberta", "clip", "t5", "vae"):
            _load(patch, f"wan.modules.{name}", f"wan/modules/{name}.py")
        multitalk = _load(patch, "wan.multitalk", "wan/multitalk.py")
        # The reference's image handling is replaced by the fitted image itself (both sides start
        # from the same pixels); its bucket table by the one generated size (see generate_reference).
        patch.setattr(multitalk, "torch_gc", lambda: None)
        patch.setattr(utils, "torch_gc", lambda: None)
        # The map's kernel is wrapped in torch.compile, which a CPU test does not need.
        patch.setattr(utils, "calculate_x_ref_attn_map", utils.calculate_x_ref_attn_map._torchdynamo_orig_callable)
        patch.setattr(multitalk, "get_video_codec", lambda _path: "h264")
        yield types.SimpleNamespace(model=model, vae=sys.modules["wan.modules.vae"], multitalk=multitalk,
                                    patch=patch)


class CountingCalls:
    def __init__(self, function) -> None:
        self.function = function
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.function(*args, **kwargs)


# -- shared inputs -----------------------------------------------------------------------------------


def portrait() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.full((SIZE, SIZE, 3), (180, 140, 120), dtype=np.uint8)
    image[8:24, 10:22] = rng.integers(0, 255, (16, 12, 3), dtype=np.uint8)
    return image


class Inputs:
    """Tiny random weights and conditioning, shared by both loops."""

    def __init__(self, reference: types.SimpleNamespace, tmp: Path) -> None:
        torch.manual_seed(0)
        self.ref_model = reference.model.WanModel(
            model_type="i2v", in_dim=36, dim=64, ffn_dim=128, freq_dim=32, text_dim=48, text_len=TEXT_LEN,
            out_dim=16, num_heads=4, num_layers=2, intermediate_dim=32, output_dim=24, context_tokens=4).eval()
        with torch.no_grad():
            for parameter in self.ref_model.parameters():
                parameter.copy_(torch.randn_like(parameter) / math.sqrt(parameter.shape[-1]))
        self.dit = InfiniteTalkDiT(CONFIG, Attention("sdpa")).eval()
        load_strict(self.dit, dict(self.ref_model.state_dict()))

        self.ref_vae = reference.vae.WanVAE_(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                                             attn_scales=[], temperal_downsample=[False, True, True]).eval()
        with torch.no_grad():
            for parameter in self.ref_vae.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.2)
        torch.save(self.ref_vae.state_dict(), tmp / "vae.pth")
        self.vae = WanVAE.load(tmp / "vae.pth")

        self.image = portrait()
        generator = torch.Generator().manual_seed(1)
        self.prompts = {"a person talking": torch.randn(7, 48, generator=generator),
                        DEFAULT_NEGATIVE_PROMPT: torch.randn(12, 48, generator=generator)}
        self.clip_features = torch.randn(1, 257, 1280, generator=generator)
        self.features = torch.randn(FRAMES, 12, 768, generator=generator)
        self.features_path = tmp / "audio.pt"
        torch.save(self.features, self.features_path)
        # One sample per frame's worth of audio; the stand-in encoder maps samples back to rows.
        self.audio = np.repeat(np.arange(FRAMES, dtype=np.float32), SAMPLES_PER_FRAME)


class StandInText:
    def __init__(self, prompts: dict[str, torch.Tensor]) -> None:
        self.prompts = prompts
        self.model = torch.nn.Identity()

    def encode(self, prompts: list[str]) -> list[torch.Tensor]:
        return [self.prompts[prompt] for prompt in prompts]

    def __call__(self, prompts: list[str], device: object) -> list[torch.Tensor]:
        return self.encode(prompts)


class StandInClip:
    def __init__(self, features: torch.Tensor) -> None:
        self.features = features
        self.model = torch.nn.Identity()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.features

    def visual(self, videos: torch.Tensor) -> torch.Tensor:
        return self.features


class StandInAudio:
    """The given per-frame features: rows are looked up by the frame numbers the samples carry."""

    def __init__(self, features: torch.Tensor) -> None:
        self.features = features

    def embed(self, samples: np.ndarray, num_frames: int) -> torch.Tensor:
        first = int(samples[0])
        return self.features[first: first + num_frames]


class ReferenceVAE:
    """The reference's WanVAE wrapper around its network (the same calls, without loading a file)."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.model = network
        self.scale = [torch.tensor(LATENT_MEAN), 1.0 / torch.tensor(LATENT_STD)]

    def encode(self, videos):
        return [self.model.encode(u.unsqueeze(0), self.scale).float().squeeze(0) for u in videos]

    def decode(self, zs):
        return [self.model.decode(u.unsqueeze(0), self.scale).float().clamp_(-1, 1).squeeze(0) for u in zs]


@pytest.fixture(scope="module")
def inputs(reference: types.SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return Inputs(reference, tmp_path_factory.mktemp("loop-parity"))


def our_pipeline(inputs: Inputs) -> InfiniteTalkPipeline:
    return InfiniteTalkPipeline(dit=inputs.dit, vae=inputs.vae, clip=StandInClip(inputs.clip_features),
                                text_encoder=StandInText(inputs.prompts), audio_encoder=StandInAudio(inputs.features),
                                clip_frames=CLIP_FRAMES)


def our_request(inputs: Inputs, plan: SamplingPlan, start: int = 0, stop: int = FRAMES,
                motion: np.ndarray | None = None, color_correction: float = 1.0) -> ChunkRequest:
    """Frames [start, stop) of the one lane, with the whole recording as audio context."""
    return ChunkRequest(
        image=inputs.image, audio=inputs.audio[start * SAMPLES_PER_FRAME: stop * SAMPLES_PER_FRAME],
        frame_count=stop - start, prompt="a person talking", seed=SEED, plan=plan, motion_frames=MOTION_FRAMES,
        color_correction=color_correction, teacache_coefficients=tuple(TEACACHE_COEFFICIENTS["480p"]), lane=0,
        lane_first_frame=start, motion=motion, context_audio=inputs.audio, context_before=start * SAMPLES_PER_FRAME,
    )


def run_ours(inputs: Inputs, plan: SamplingPlan, cuts: tuple[int, ...] = (), color_correction: float = 1.0
             ) -> np.ndarray:
    """The lane rendered as pieces split at `cuts`, each continuing from the previous one's motion frames."""
    pipeline = our_pipeline(inputs)
    frames: list[np.ndarray] = []
    motion: list[np.ndarray] = []
    bounds = [0, *cuts, FRAMES]
    for start, stop in itertools.pairwise(bounds):
        given = motion[-1] if motion else None
        request = our_request(inputs, plan, start, stop, given, color_correction)
        frames.extend(pipeline.generate(request, on_motion=motion.append))
    return np.concatenate(frames)


def run_reference(reference: types.SimpleNamespace, inputs: Inputs, plan: SamplingPlan,
                  color_correction: float = 1.0) -> np.ndarray:
    def fitted_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return torch.ones(masks.shape[0], *size)  # one speaker: the masks are not used

    return generate_reference(reference, inputs, plan, {"person1": str(inputs.features_path)}, FRAMES,
                              inputs.image, inputs.image, fitted_masks, color_correction)


def generate_reference(reference: types.SimpleNamespace, inputs: Inputs, plan: SamplingPlan,
                       cond_audio: dict[str, str], frames: int, source: np.ndarray, image: np.ndarray,
                       fit_masks, color_correction: float = 1.0, **input_data: object) -> np.ndarray:
    """The reference's generate_infinitetalk on `frames` frames of `source` (fitted: `image`)."""
    multitalk = reference.multitalk
    pipeline = object.__new__(multitalk.InfiniteTalkPipeline)
    pipeline.__dict__.update(
        device=torch.device("cpu"), rank=0, sp_size=1, param_dtype=torch.float32, num_timesteps=1000,
        use_timestep_transform=True, vae_stride=(4, 8, 8), patch_size=(1, 2, 2), vram_management=False,
        t5_cpu=False, sample_neg_prompt=DEFAULT_NEGATIVE_PROMPT, model=inputs.ref_model,
        vae=ReferenceVAE(inputs.ref_vae), clip=StandInClip(inputs.clip_features),
        text_encoder=StandInText(inputs.prompts),
    )
    height, width = image.shape[:2]

    def fitted(cond, size):
        if isinstance(cond, torch.Tensor):  # the speaker masks
            return fit_masks(cond, size)
        return torch.from_numpy(image).permute(2, 0, 1)[None, :, None].float()

    # The reference draws each clip's noise with torch.randn(16, T, h, w); hand it ours, clip by clip.
    latent_shape = (16, (CLIP_FRAMES - 1) // 4 + 1, height // 8, width // 8)
    noises = [clip_noise(SEED, 0, span.first_frame, latent_shape)
              for span in plan_clips(frames, CLIP_FRAMES, MOTION_FRAMES)]
    real_randn = torch.randn

    def randn(*size, **kwargs):
        if tuple(size) == latent_shape:
            return noises.pop(0).to(kwargs.get("dtype") or torch.float32)
        return real_randn(*size, **kwargs)

    extra = types.SimpleNamespace(use_teacache=plan.teacache, teacache_thresh=plan.teacache_threshold,
                                  size="infinitetalk-480", use_apg=False)
    utils = sys.modules["wan.utils.multitalk_utils"]
    with pytest.MonkeyPatch.context() as during:
        during.setattr(multitalk, "extract_specific_frames", lambda _path, _index: Image.fromarray(source))
        during.setattr(multitalk, "resize_and_centercrop", fitted)
        # One bucket: the generated size.
        during.setattr(utils, "ASPECT_RATIO_627", {"1.00": ([height, width], 1)})
        during.setattr(torch, "randn", randn)
        video = pipeline.generate_infinitetalk(
            {"prompt": "a person talking", "cond_video": "portrait.png", "cond_audio": cond_audio, **input_data},
            size_buckget="infinitetalk-480", motion_frame=MOTION_FRAMES, frame_num=CLIP_FRAMES, shift=plan.shift,
            sampling_steps=plan.steps, text_guide_scale=plan.text_guidance, audio_guide_scale=plan.audio_guidance,
            n_prompt=DEFAULT_NEGATIVE_PROMPT, seed=SEED, offload_model=False, max_frames_num=frames,
            progress=False, color_correction_strength=color_correction, extra_args=extra)
    assert not noises, "the reference drew fewer clip noises than it has clips"
    return video_to_frames(video)


def assert_within_one_grey_level(ours: np.ndarray, expected: np.ndarray) -> None:
    assert ours.shape == expected.shape == (FRAMES, SIZE, SIZE, 3)
    difference = np.abs(ours.astype(int) - expected.astype(int))
    assert difference.max() <= 1, f"max difference {difference.max()} grey levels, mean {difference.mean():.4f}"


# -- the checks --------------------------------------------------------------------------------------


def test_quality_guidance_with_teacache(reference, inputs) -> None:
    plan = SamplingPlan(**{**QUALITY.__dict__, "teacache": True, "teacache_threshold": TEACACHE_THRESHOLD})
    ours = run_ours(inputs, plan)
    assert_within_one_grey_level(ours, run_reference(reference, inputs, plan))
    # TeaCache really skipped blocks here: the video is not the one without it.
    assert not np.array_equal(ours, run_ours(inputs, QUALITY))


def test_fast_guidance(reference, inputs) -> None:
    assert_within_one_grey_level(run_ours(inputs, FAST), run_reference(reference, inputs, FAST))


def test_one_lane_in_pieces_matches_the_reference_stream(reference, inputs) -> None:
    cuts = (CLIP_FRAMES, CLIP_FRAMES + STRIDE)  # where clips end: the lane's grid
    pieces = run_ours(inputs, QUALITY, cuts)
    assert_within_one_grey_level(pieces, run_reference(reference, inputs, QUALITY))
    assert np.array_equal(pieces, run_ours(inputs, QUALITY))


def test_teacache_with_two_forwards_keeps_a_cache_per_branch(inputs) -> None:
    """Our documented behaviour where the reference's is a defect (see the module docstring)."""
    warming_up = SamplingPlan(**{**FAST.__dict__, "steps": 5, "teacache": True,
                                 "teacache_threshold": TEACACHE_THRESHOLD})
    no_cache = SamplingPlan(**{**warming_up.__dict__, "teacache": False})
    assert np.array_equal(run_ours(inputs, warming_up), run_ours(inputs, no_cache))
    skipping = SamplingPlan(**{**FAST.__dict__, "teacache": True, "teacache_threshold": TEACACHE_THRESHOLD})
    assert not np.array_equal(run_ours(inputs, skipping), run_ours(inputs, FAST))


# -- two people --------------------------------------------------------------------------------------

SOURCE_SIZE = (60, 64)  # the uploaded image (rows, columns): cropped to the generated size
GENERATED_SIZE = (48, 64)  # 3 x 4 tokens a latent frame
TWO_PERSON_FRAMES = CLIP_FRAMES + STRIDE - 4  # two clips, the second one cut
TWO_PERSON_PLAN = SamplingPlan(steps=4, shift=5.0, text_guidance=5.0, audio_guidance=4.0)
# Boxes in the reference's pixel order [row0, column0, row1, column1] and as our fractions.
REFERENCE_BOXES = {"person1": [6, 0, 54, 28], "person2": [10, 36, 50, 64]}
PERSON_STRIDE = 100_000  # the stand-in encoder reads (person, frame) from the samples


def our_boxes(reference_boxes: dict[str, list[int]]) -> list[tuple[float, float, float, float]]:
    rows, columns = SOURCE_SIZE
    return [(column0 / columns, row0 / rows, column1 / columns, row1 / rows)
            for row0, column0, row1, column1 in reference_boxes.values()]


class StandInTracks:
    """Per-person features: the samples carry the person and the frame number."""

    def __init__(self, features: list[torch.Tensor]) -> None:
        self.features = features

    def embed(self, samples: np.ndarray, num_frames: int) -> torch.Tensor:
        person, first = divmod(int(samples[0]), PERSON_STRIDE)
        return self.features[person][first: first + num_frames]


def two_person_features(audio_type: str) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    speech = [torch.randn(TWO_PERSON_FRAMES, 12, 768, generator=generator) for _ in range(2)]
    if audio_type == "para":
        return speech
    silence = torch.randn(1, 12, 768, generator=generator).expand(TWO_PERSON_FRAMES, 12, 768)
    turn = TWO_PERSON_FRAMES // 2
    first = torch.cat([speech[0][:turn], silence[turn:]])
    second = torch.cat([silence[:turn], speech[1][turn:]])
    return [first, second]


def two_person_source() -> np.ndarray:
    rng = np.random.default_rng(3)
    image = np.full((*SOURCE_SIZE, 3), (150, 160, 170), dtype=np.uint8)
    image[10:40, 6:26] = rng.integers(0, 255, (30, 20, 3), dtype=np.uint8)
    image[14:44, 38:58] = rng.integers(0, 255, (30, 20, 3), dtype=np.uint8)
    return image


def fitted_two_person_image(source: np.ndarray) -> np.ndarray:
    top = (SOURCE_SIZE[0] - GENERATED_SIZE[0]) // 2
    return np.ascontiguousarray(source[top: top + GENERATED_SIZE[0]])


def center_crop(masks: torch.Tensor, size: list[int] | tuple[int, int]) -> torch.Tensor:
    """torchvision's center_crop (top/left offsets rounded), for the reference's mask fitting."""
    height, width = masks.shape[-2:]
    top, left = round((height - size[0]) / 2.0), round((width - size[1]) / 2.0)
    return masks[..., top: top + size[0], left: left + size[1]]


def run_ours_two_people(inputs: Inputs, features: list[torch.Tensor], boxes: list | None) -> np.ndarray:
    dit = InfiniteTalkDiT(CONFIG, Attention("sdpa"), adapter=MULTI).eval()
    load_strict(dit, dict(inputs.ref_model.state_dict()))
    pipeline = InfiniteTalkPipeline(dit=dit, vae=inputs.vae, clip=StandInClip(inputs.clip_features),
                                    text_encoder=StandInText(inputs.prompts), audio_encoder=StandInTracks(features),
                                    clip_frames=CLIP_FRAMES)
    frames = np.arange(TWO_PERSON_FRAMES, dtype=np.float32)
    tracks = np.stack([np.repeat(person * PERSON_STRIDE + frames, SAMPLES_PER_FRAME) for person in range(2)])
    masks = generated_person_masks(boxes or [None, None], *SOURCE_SIZE, *GENERATED_SIZE)
    request = ChunkRequest(
        image=fitted_two_person_image(two_person_source()), audio=tracks, frame_count=TWO_PERSON_FRAMES,
        prompt="a person talking", seed=SEED, plan=TWO_PERSON_PLAN, motion_frames=MOTION_FRAMES,
        color_correction=1.0, context_audio=tracks, context_before=0, person_masks=masks)
    return np.concatenate(list(pipeline.generate(request)))


def run_reference_two_people(reference: types.SimpleNamespace, inputs: Inputs, features: list[torch.Tensor],
                             boxes: dict[str, list[int]] | None, tmp: Path) -> np.ndarray:
    paths = {}
    for index, track in enumerate(features):
        paths[f"person{index + 1}"] = str(tmp / f"person{index + 1}.pt")
        torch.save(track.clone(), paths[f"person{index + 1}"])
    multitalk = reference.multitalk
    real_fit = multitalk.resize_and_centercrop
    source = two_person_source()
    extra = {"bbox": boxes} if boxes is not None else {}
    real_colors = multitalk.match_and_blend_colors

    def colors_in_motion_format(*args, **kwargs):  # the clip the next one continues from
        return real_colors(*args, **kwargs).to(torch.float16).float()

    with pytest.MonkeyPatch.context() as during:
        during.setattr(multitalk.transforms, "functional", types.SimpleNamespace(center_crop=center_crop),
                       raising=False)
        during.setattr(multitalk, "match_and_blend_colors", colors_in_motion_format)
        return generate_reference(reference, inputs, TWO_PERSON_PLAN, paths, TWO_PERSON_FRAMES, source,
                                  fitted_two_person_image(source), real_fit, **extra)


def assert_two_people_agree(ours: np.ndarray, expected: np.ndarray) -> None:
    assert ours.shape == expected.shape == (TWO_PERSON_FRAMES, *GENERATED_SIZE, 3)
    difference = np.abs(ours.astype(int) - expected.astype(int))
    assert difference.max() <= 1, f"max difference {difference.max()} grey levels, mean {difference.mean():.4f}"


@pytest.mark.parametrize("audio_type", ["para", "add"])
@pytest.mark.parametrize("with_boxes", [True, False], ids=["bbox", "default-split"])
def test_two_people_match_the_reference(reference, inputs, tmp_path, audio_type: str, with_boxes: bool) -> None:
    features = two_person_features(audio_type)
    maps_before = reference.model.get_attn_map_with_target.calls
    expected = run_reference_two_people(reference, inputs, features, REFERENCE_BOXES if with_boxes else None,
                                        tmp_path)
    assert reference.model.get_attn_map_with_target.calls > maps_before  # its multi-person path ran
    ours = run_ours_two_people(inputs, features, our_boxes(REFERENCE_BOXES) if with_boxes else None)
    assert_two_people_agree(ours, expected)
    if with_boxes and audio_type == "para":
        # The boxes bind the voices: the same tracks with the boxes swapped are another video.
        swapped = run_ours_two_people(inputs, features, our_boxes(REFERENCE_BOXES)[::-1])
        assert not np.array_equal(swapped, ours)
