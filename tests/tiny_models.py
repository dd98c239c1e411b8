"""Builders for tiny, local, randomly initialised models that exercise the real loading code.

Nothing here downloads. Each builder writes a folder in the layout the real weights use:

- :func:`build_tiny_gemma3`: a Gemma3ForConditionalGeneration (text width 64, 2 layers; SigLIP vision
  tower, 64-px images, patch 16) with a GemmaTokenizer built from a small vocab + merges and the
  Gemma 3 chat template, saved with ``save_pretrained`` (config.json, model.safetensors, tokenizer, processor).
- :func:`build_tiny_lora_adapter`: a PEFT LoRA adapter on that model (adapter files only).
- :func:`build_tiny_openclip`: an open_clip folder (open_clip_config.json + open_clip_model.safetensors),
  with output projections fitted so text→image retrieval works on four synthetic image classes.
- :func:`build_tiny_xrv`: a torchxrayvision DenseNet(weights=None) saved as the full pickled model.
- :func:`make_hf_cache_entry`: a hand-made Hugging Face hub cache entry (refs/main + snapshot).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from transformers import Gemma3Processor

# ------------------------------------------------------------------------------------------- Gemma 3

GEMMA_CHAT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""

_SPECIALS = (
    "<pad>", "<eos>", "<bos>", "<unk>", "<mask>",
    "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>",
)
#: Whole-word tokens the tiny model is biased to generate, so its output is readable and streams in pieces.
TINY_WORDS = (
    "▁lung", "▁lungs", "▁opacity", "▁heart", "▁normal", "▁effusion", "▁left", "▁right", "▁no",
    "▁the", "▁is", "▁clear", "▁size", "▁pleural", "▁base",
)
TINY_IMAGE_SIZE = 64
TINY_TOKENS_PER_IMAGE = 4


def _tiny_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab = {token: i for i, token in enumerate(_SPECIALS)}
    for byte in range(256):  # byte fallback: any text encodes
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for ch in [*"abcdefghijklmnopqrstuvwxyz", "▁", "\n", ".", ",", ":", "#"]:
        vocab.setdefault(ch, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in TINY_WORDS:
        current = word[0]
        for ch in word[1:]:
            if (current, ch) not in merges:
                merges.append((current, ch))
            current += ch
            vocab.setdefault(current, len(vocab))
    return vocab, merges


def build_tiny_gemma_processor(dest: Path | None = None) -> Gemma3Processor:
    """A Gemma3Processor with a tiny GemmaTokenizer and 64-px image processor (saved to ``dest`` if given)."""
    from transformers import Gemma3ImageProcessor, Gemma3Processor, GemmaTokenizer

    vocab, merges = _tiny_vocab()
    tokenizer = GemmaTokenizer(
        vocab=vocab,
        merges=merges,
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
            "sot_token": "<start_of_turn>",
            "eot_token": "<end_of_turn>",
        },
    )
    image_processor = Gemma3ImageProcessor(
        size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=GEMMA_CHAT_TEMPLATE,
        image_seq_length=TINY_TOKENS_PER_IMAGE,
    )
    if dest is not None:
        processor.save_pretrained(dest)
    return processor


def build_tiny_gemma3(dest: Path, seed: int = 0) -> Path:
    """Save a tiny random Gemma 3 vision-language model + processor to ``dest``; return ``dest``.

    The output head only scores :data:`TINY_WORDS` (every other row is zero), so generated text is
    whole words separated by spaces and a streamer emits it in several pieces.
    """
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

    processor = build_tiny_gemma_processor()
    tokenizer = processor.tokenizer
    text_config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=2048,
        sliding_window=64,
        query_pre_attn_scalar=32,
        tie_word_embeddings=False,
    )
    vision_config = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=TINY_IMAGE_SIZE,
        patch_size=16,
    )
    config = Gemma3Config(
        text_config=text_config,
        vision_config=vision_config,
        mm_tokens_per_image=TINY_TOKENS_PER_IMAGE,
        boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tokenizer.convert_tokens_to_ids("<image_soft_token>"),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    word_ids = tokenizer.convert_tokens_to_ids(list(TINY_WORDS))
    with torch.no_grad():
        head = model.lm_head.weight
        keep = torch.zeros(head.shape[0], dtype=torch.bool)
        keep[word_ids] = True
        head[~keep] = 0.0
        head[keep] *= 20.0
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    return dest


def build_tiny_lora_adapter(base_dir: Path, dest: Path, *, base_ref: str | None = None, seed: int = 1) -> Path:
    """Save a LoRA adapter (adapter files only) for the tiny model in ``base_dir``; return ``dest``.

    ``base_ref`` is written as the adapter's base_model_name_or_path (default: ``base_dir``), e.g.
    "google/medgemma-4b-it" as in the real adapters. LoRA B matrices are random (not zero), so the
    adapted model generates differently from the base.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(base_dir, local_files_only=True, dtype=torch.float32)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=4,
        lora_alpha=64,
        target_modules=r".*language_model.*\.(q_proj|v_proj|o_proj)",
        init_lora_weights=False,
    )
    peft_model = get_peft_model(base, config)
    dest.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(dest)
    adapter_config = dest / "adapter_config.json"
    data = json.loads(adapter_config.read_text())
    data["base_model_name_or_path"] = base_ref or str(base_dir)
    adapter_config.write_text(json.dumps(data, indent=2))
    return dest


# ------------------------------------------------------------------------------------------- open_clip

TINY_CLIP_CAPTIONS = (
    "bright upper half",
    "bright lower half",
    "bright left half",
    "bright right half",
)
TINY_CLIP_SIZE = 32


def tiny_clip_image(kind: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A 2-D [0, 1] image of class ``kind`` (which half is bright) with noise; any size."""
    img = rng.uniform(0.0, 0.25, (size, size)).astype(np.float32)
    half = size // 2
    if kind == 0:
        img[:half] += 0.7
    elif kind == 1:
        img[half:] += 0.7
    elif kind == 2:
        img[:, :half] += 0.7
    else:
        img[:, half:] += 0.7
    return np.clip(img, 0.0, 1.0)


TINY_CLIP_CONFIG = {
    "model_cfg": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": TINY_CLIP_SIZE, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    },
    "preprocess_cfg": {
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "interpolation": "bilinear",
        "resize_mode": "shortest",
    },
}


def _clip_input(pixels: np.ndarray, preprocess: Any) -> torch.Tensor:
    """Preprocess exactly as the encoder does: 8-bit grey → RGB PIL → the model's transform."""
    from PIL import Image

    u8 = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    return preprocess(Image.fromarray(u8).convert("RGB"))


def build_tiny_openclip(dest: Path, *, images_per_class: int = 24, seed: int = 0) -> Path:
    """Save a tiny open_clip model whose towers map :data:`TINY_CLIP_CAPTIONS` and their image classes together.

    The random towers stay as built; only the two output projections are fitted, by least squares, so
    that class ``k`` images and caption ``k`` both land near the same unit vector (a linear probe: no
    gradient training, about a second). Images are preprocessed exactly as the encoder does it.
    """
    import open_clip
    import torch
    from safetensors.torch import save_file

    dest.mkdir(parents=True, exist_ok=True)
    (dest / "open_clip_config.json").write_text(json.dumps(TINY_CLIP_CONFIG, indent=2))
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{dest}")
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{dest}")
    rng = np.random.default_rng(seed)
    n_classes = len(TINY_CLIP_CAPTIONS)
    embed_dim = TINY_CLIP_CONFIG["model_cfg"]["embed_dim"]
    labels = np.repeat(np.arange(n_classes), images_per_class)
    batch = torch.stack(
        [_clip_input(tiny_clip_image(int(k), rng, int(rng.integers(40, 90))), preprocess) for k in labels]
    )
    targets = torch.zeros(len(labels), embed_dim)
    targets[torch.arange(len(labels)), torch.from_numpy(labels)] = 1.0
    with torch.no_grad():
        vision_proj, text_proj = model.visual.proj, model.text_projection
        model.visual.proj = torch.nn.Parameter(torch.eye(vision_proj.shape[0]))
        model.text_projection = torch.nn.Parameter(torch.eye(text_proj.shape[0]))
        pooled_images = model.encode_image(batch)
        pooled_texts = model.encode_text(tokenizer(list(TINY_CLIP_CAPTIONS)))
        model.visual.proj = torch.nn.Parameter(torch.linalg.lstsq(pooled_images, targets).solution)
        model.text_projection = torch.nn.Parameter(
            torch.linalg.lstsq(pooled_texts, targets[::images_per_class]).solution
        )
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(dest / "open_clip_model.safetensors"))
    return dest


# ------------------------------------------------------------------------------------------- xrv


def build_tiny_xrv(dest_file: Path, seed: int = 0) -> Path:
    """Save torchxrayvision ``DenseNet(weights=None)`` as the full pickled model (like the official .pt)."""
    import torch
    import torchxrayvision as xrv

    torch.manual_seed(seed)
    model = xrv.models.DenseNet(weights=None).eval()
    dest_file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model, dest_file)
    return dest_file


# ------------------------------------------------------------------------------------------- HF cache


def make_hf_cache_entry(cache_dir: Path, repo_id: str, src_dir: Path, commit: str = "0" * 40) -> Path:
    """Copy ``src_dir`` into a hand-made hub cache as ``repo_id`` at revision main; return the snapshot."""
    repo_dir = cache_dir / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / commit
    if snapshot.exists():
        shutil.rmtree(snapshot)
    shutil.copytree(src_dir, snapshot)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot
