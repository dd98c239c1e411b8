"""``hf``: reasoning and summaries from a local transformers vision-language model (MedGemma).

The model is a repo id resolved ONLY from the local Hugging Face cache (or the imported-models folder),
or a local directory; nothing here downloads (see :mod:`medrag.weights` for ``medrag models pull``).
A folder with ``adapter_config.json`` is a PEFT LoRA adapter: its base model (named in the adapter
config, else ``settings.hf_base_model``) is loaded and the adapter applied. Models run on cuda, mps or
cpu (bf16 on GPU, float32 on CPU; 4-bit with bitsandbytes when ``settings.load_in_4bit``) and are
loaded once per process. Generation streams through ``TextIteratorStreamer`` in a worker thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medrag.devices import select_device, select_dtype
from medrag.errors import BackendUnavailableError
from medrag.reasoners.base import BackendSpec, ReasoningRequest, register_reasoner, register_summariser
from medrag.reasoners.prompts import build_reasoning_messages, build_summary_messages
from medrag.reasoners.summary import summarise_with_model
from medrag.records import CXRImage, Summary
from medrag.weights import ResolvedWeights, hub_offline, require_generation_model

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from medrag.config import Settings

log = logging.getLogger(__name__)

#: Longest label answer the summariser generates (a label is at most ~12 words).
SUMMARY_MAX_NEW_TOKENS = 48
_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")


@dataclass(frozen=True)
class LoadedModel:
    """A model and its processor, ready to generate."""

    model: Any
    processor: Any
    device: str
    dtype: torch.dtype
    path: Path
    base_path: Path | None = None
    quantized: bool = False


_CACHE: dict[tuple[str, str, str, str, bool], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()
_KEY_LOCKS: dict[tuple[str, str, str, str, bool], threading.Lock] = {}


def _bitsandbytes_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


def _has_processor(path: Path) -> bool:
    return any((path / f).is_file() for f in _PROCESSOR_FILES)


def load_generation_model(
    weights: ResolvedWeights, *, device: str | None = None, load_in_4bit: bool = False
) -> LoadedModel:
    """Load (once per process) the model and processor for ``weights``; thread-safe.

    The cache key is (model path, base path, device, dtype, 4-bit). 4-bit needs CUDA and bitsandbytes;
    without them the model loads unquantised and a warning is logged.
    """
    device = device or select_device()
    dtype = select_dtype(device)
    quantize = bool(load_in_4bit and device.startswith("cuda") and _bitsandbytes_available())
    if load_in_4bit and not quantize:
        log.warning("load_in_4bit needs a CUDA GPU and bitsandbytes; loading %s unquantised.", weights.path)
    key = (str(weights.path), str(weights.base_path), device, str(dtype), quantize)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    with _CACHE_LOCK:
        key_lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with key_lock:
        if key not in _CACHE:
            _CACHE[key] = _load(weights, device, dtype, quantize)
        return _CACHE[key]


def _load(weights: ResolvedWeights, device: str, dtype: torch.dtype, quantize: bool) -> LoadedModel:
    try:
        from transformers import AutoModelForImageTextToText, AutoProcessor
    except ImportError as exc:
        raise BackendUnavailableError(
            "The hf backend needs transformers; run `pip install -r requirements.txt`."
        ) from exc
    model_dir = weights.base_path if weights.kind == "adapter" and weights.base_path else weights.path
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    if quantize:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
        )
    if device != "cpu":
        kwargs["device_map"] = {"": device}
    try:
        with hub_offline():
            # Any, as in LoadedModel: a transformers model or a PeftModel around one, whose merge_and_unload
            # is reached through attribute forwarding that the type stubs cannot follow.
            model: Any = AutoModelForImageTextToText.from_pretrained(model_dir, **kwargs)
            if weights.kind == "adapter":
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, weights.path, is_trainable=False)
                if not quantize:
                    # Merged weights generate as fast as the base model.
                    model = model.merge_and_unload()
            processor_dir = weights.path if _has_processor(weights.path) else model_dir
            processor = AutoProcessor.from_pretrained(processor_dir, local_files_only=True)
    except Exception as exc:  # config, weights, peft, memory: all mean this folder cannot run here
        raise BackendUnavailableError(
            f"Could not load the model in {weights.path} ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); "
            "the folder may be incomplete or not a vision-language model: pull or import it again."
        ) from exc
    model.eval()
    return LoadedModel(model, processor, device, dtype, weights.path, weights.base_path, quantize)


def to_pil_rgb(pixels: Any) -> Image.Image:
    """2-D [0, 1] float pixels as an 8-bit RGB PIL image (grey in all three channels)."""
    from PIL import Image

    from medrag.pixels import to_uint8

    return Image.fromarray(to_uint8(pixels)).convert("RGB")


def _has_image_part(messages: list[dict[str, Any]]) -> bool:
    return any(
        isinstance(part, dict) and part.get("type") == "image"
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
    )


def render_prompt(processor: Any, messages: list[dict[str, Any]]) -> str:
    """The chat-templated prompt text (image parts become the model's image placeholder)."""
    return str(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


def prepare_inputs(loaded: LoadedModel, messages: list[dict[str, Any]], image: CXRImage | None) -> Any:
    """Tokenised prompt and pixel values on the model's device."""
    prompt = render_prompt(loaded.processor, messages)
    images = [to_pil_rgb(image.pixels)] if image is not None and _has_image_part(messages) else None
    # The chat template already starts with <bos>; the tokenizer must not add another.
    inputs = loaded.processor(text=prompt, images=images, add_special_tokens=False, return_tensors="pt")
    inputs = inputs.to(loaded.model.device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(loaded.dtype)
    return inputs


def generation_kwargs(max_new_tokens: int, temperature: float) -> dict[str, Any]:
    """Sampling at ``temperature`` > 0, greedy decoding at 0."""
    if temperature > 0:
        return {"max_new_tokens": max_new_tokens, "do_sample": True, "temperature": float(temperature)}
    return {"max_new_tokens": max_new_tokens, "do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def stream_generate(loaded: LoadedModel, inputs: Any, *, max_new_tokens: int, temperature: float) -> Iterator[str]:
    """Yield decoded text pieces while ``model.generate`` runs in a worker thread.

    Closing the iterator early stops generation at the next token. An error inside generation is
    re-raised here as BackendUnavailableError.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    stop = threading.Event()

    class _StopWhenAsked(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

    tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            loaded.model.generate(
                **inputs,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([_StopWhenAsked()]),
                **generation_kwargs(max_new_tokens, temperature),
            )
        except BaseException as exc:  # surfaced to the consumer below
            errors.append(exc)
            streamer.end()

    worker = threading.Thread(target=run, name="medrag-hf-generate", daemon=True)
    worker.start()
    try:
        for piece in streamer:
            if piece:
                yield piece
    finally:
        stop.set()
        worker.join(timeout=60)
    if errors:
        exc = errors[0]
        raise BackendUnavailableError(
            f"Generation failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}); "
            "lower max_new_tokens, set load_in_4bit on a GPU, or use another reasoner."
        ) from exc


class HFReasoner:
    """Streams step-wise reasoning from a local MedGemma (or any image-text-to-text model)."""

    name = "hf"

    def __init__(
        self,
        model: str,
        weights: ResolvedWeights,
        *,
        max_new_tokens: int = 512,
        temperature: float = 0.2,
        load_in_4bit: bool = False,
        device: str | None = None,
    ) -> None:
        self.model = model
        self.weights = weights
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.load_in_4bit = load_in_4bit
        self.device = device

    def load(self) -> LoadedModel:
        """Load the model now (it is otherwise loaded on the first request)."""
        return load_generation_model(self.weights, device=self.device, load_in_4bit=self.load_in_4bit)

    def messages(self, request: ReasoningRequest) -> list[dict[str, Any]]:
        """The chat messages for ``request`` (image placeholder only when there is an image)."""
        return build_reasoning_messages(request, include_image=request.image is not None)

    def render_prompt(self, request: ReasoningRequest) -> str:
        """The exact prompt text the model sees for ``request``."""
        return render_prompt(self.load().processor, self.messages(request))

    def stream(self, request: ReasoningRequest) -> Iterator[str]:
        """Yield reasoning text pieces as the model generates them."""
        loaded = self.load()
        inputs = prepare_inputs(loaded, self.messages(request), request.image)
        yield from stream_generate(
            loaded, inputs, max_new_tokens=self.max_new_tokens, temperature=self.temperature
        )


class HFSummariser:
    """A label generated by the local summariser model plus findings from :func:`medrag.labels.label_text`."""

    name = "hf"

    def __init__(
        self,
        model: str,
        weights: ResolvedWeights,
        *,
        max_new_tokens: int = SUMMARY_MAX_NEW_TOKENS,
        load_in_4bit: bool = False,
        device: str | None = None,
    ) -> None:
        self.model = model
        self.weights = weights
        self.max_new_tokens = max_new_tokens
        self.load_in_4bit = load_in_4bit
        self.device = device

    def generate_label(self, text: str) -> str:
        """The model's raw (greedy) answer to the summary prompt for ``text``."""
        loaded = load_generation_model(self.weights, device=self.device, load_in_4bit=self.load_in_4bit)
        inputs = prepare_inputs(loaded, build_summary_messages(text), None)
        return "".join(stream_generate(loaded, inputs, max_new_tokens=self.max_new_tokens, temperature=0.0))

    def summarise(self, text: str) -> Summary:
        """Label from the model (falls back to the rule label when empty); findings from the rule labeler."""
        return summarise_with_model(text, self.generate_label, backend=self.name)


def _require_packages(weights: ResolvedWeights) -> None:
    import importlib.util

    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
        raise BackendUnavailableError(
            "The hf backend needs torch and transformers; run `pip install -r requirements.txt`."
        )
    if weights.kind == "adapter" and importlib.util.find_spec("peft") is None:
        raise BackendUnavailableError(
            "The model is a LoRA adapter and needs peft; run `pip install -r requirements.txt`."
        )


def hf_reasoner(settings: Settings) -> HFReasoner:
    """The hf reasoner for ``settings.hf_reasoner_model`` (raises BackendUnavailableError if it is not here)."""
    weights = require_generation_model(settings.hf_reasoner_model, "medgemma-reasoner", settings)
    _require_packages(weights)
    return HFReasoner(
        settings.hf_reasoner_model,
        weights,
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        load_in_4bit=settings.load_in_4bit,
        device=settings.torch_device,
    )


def hf_summariser(settings: Settings) -> HFSummariser:
    """The hf summariser for ``settings.hf_summariser_model`` (raises BackendUnavailableError if it is not here)."""
    weights = require_generation_model(settings.hf_summariser_model, "medgemma-summariser", settings)
    _require_packages(weights)
    return HFSummariser(
        settings.hf_summariser_model, weights, load_in_4bit=settings.load_in_4bit, device=settings.torch_device
    )


register_reasoner(
    BackendSpec(
        name="hf",
        factory=hf_reasoner,
        description="Local MedGemma (transformers; full model or LoRA adapter) from the HF cache or a folder.",
        offline=False,
    )
)
register_summariser(
    BackendSpec(
        name="hf",
        factory=hf_summariser,
        description="Label from a local MedGemma summariser plus rule-based findings.",
        offline=False,
    )
)
