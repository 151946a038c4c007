"""CLIP Interrogator (pharmapsychotic/clip-interrogator, MIT): recover a text-to-image prompt for an image.

A captioner (BLIP-2 here) says what is in the picture; CLIP then ranks phrase banks (mediums, artists,
movements, flavours) by the cosine similarity of their text embeddings with the image embedding.
"Classic" mode glues the caption and each bank's best phrase together; the "chain" mode starts from
the caption and greedily appends the phrase that raises CLIP's image-prompt similarity most, while it
still rises (at least `min_flavors` rounds, at most `max_flavors` or CLIP's 77 tokens). The prompt
that CLIP scores highest is returned, ready for a text-to-image model (Stable Diffusion via Compare).
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

import models
from demos import ASSETS
from demos.shared.comparison import IMAGE
from demos.shared.inputs import number_in_range, one_of, rgb_image
from models import ProgressFn, UserError

BANK_FOLDER = ASSETS / "interrogator"
# bank → how a phrase is worded when it is ranked and put in the prompt (the interrogator's "by X")
BANKS = {"mediums": "{}", "artists": "by {}", "movements": "{}", "flavors": "{}"}
CAPTION_MODELS = ["blip2-opt-2.7b", "blip2-flan-t5-xl"]
CLIP_MODELS = ["clip-vit-large-patch14", "clip-vit-base-patch32", "clip-vit-base-patch16"]  # L/14: SD-1.5's encoder
MODES = {"best": "Best of caption / classic / chain", "classic": "Classic", "chain": "Greedy chain"}
MAX_TOP_K, MAX_FLAVORS, MAX_CAPTION_TOKENS = 10, 32, 64
CAPTION_TOKENS = 20  # generate()'s default max_length: BLIP-2 captions are a short sentence
CHAIN_POOL = 64  # phrases (best first, all banks) the chain may pick from; the original keeps 2048 of ~100k
CLIP_CONTEXT = 77
SD_METHOD = "SD-1.5 (no control)"  # the Compare method that generates from a prompt alone
TEXT_BATCH = 256


@dataclass
class Interrogation:
    """The reconstructed prompt and how it was found."""

    prompt: str  # the candidate with the highest CLIP similarity (or the chosen mode's)
    caption: str
    banks: dict[str, list[tuple[str, float]]]  # bank → top phrases (as worded) with cosine similarity
    candidates: dict[str, tuple[str, float]]  # mode → (prompt, cosine similarity with the image)
    chain_steps: list[tuple[str, float]] = field(default_factory=list)  # appended phrase, similarity after
    caption_model: str = ""
    clip_model: str = ""
    seconds: float = 0.0


@lru_cache(maxsize=None)
def load_bank(name: str) -> tuple[str, ...]:
    """A bank's phrases, worded for ranking ("by Claude Monet"); one per line in assets/interrogator/."""
    lines = (BANK_FOLDER / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    return tuple(BANKS[name].format(line.strip()) for line in lines if line.strip())


# ---- CLIP side -----------------------------------------------------------------------------------

def _features(output: Any) -> torch.Tensor:
    return F.normalize(getattr(output, "pooler_output", output).float(), dim=-1)


def image_embedding(clip: Any, image: Any) -> torch.Tensor:
    """CLIP's L2-normalised image embedding, [dim]."""
    inputs = clip.processor(images=image, return_tensors="pt").to(clip.device)
    with torch.inference_mode():
        return _features(clip.model.get_image_features(pixel_values=inputs["pixel_values"].to(clip.model.dtype)))[0]


def text_embeddings(clip: Any, texts: Sequence[str]) -> torch.Tensor:
    """CLIP's L2-normalised text embeddings, [n, dim], in batches (texts cut at 77 tokens)."""
    chunks = []
    for start in range(0, len(texts), TEXT_BATCH):
        inputs = clip.processor(text=list(texts[start:start + TEXT_BATCH]), return_tensors="pt", padding=True,
                                truncation=True, max_length=CLIP_CONTEXT).to(clip.device)
        with torch.inference_mode():
            chunks.append(_features(clip.model.get_text_features(**inputs)))
    return torch.cat(chunks)


_BANK_EMBEDDINGS: dict[tuple[int, str], torch.Tensor] = {}


def bank_embeddings(clip: Any, bank: str) -> torch.Tensor:
    """A bank's text embeddings, computed once per loaded CLIP (the original caches them on disk)."""
    key = (id(clip.model), bank)
    if key not in _BANK_EMBEDDINGS:
        _BANK_EMBEDDINGS[key] = text_embeddings(clip, load_bank(bank))
    return _BANK_EMBEDDINGS[key]


def rank(image: torch.Tensor, phrases: Sequence[str], embeddings: torch.Tensor, k: int) -> list[tuple[str, float]]:
    """The k phrases whose embeddings have the highest cosine with the image, best first."""
    cosines = embeddings @ image
    top = torch.topk(cosines, min(k, len(phrases)))
    return [(phrases[i], float(c)) for c, i in zip(top.values.tolist(), top.indices.tolist())]


def classic_prompt(caption: str, banks: dict[str, list[tuple[str, float]]]) -> str:
    """`interrogate_classic`: caption, medium + artist, movement, the top three flavours."""
    best = {name: [phrase for phrase, _ in ranked] for name, ranked in banks.items()}
    parts = [caption, f"{best['mediums'][0]} {best['artists'][0]}", best["movements"][0], *best["flavors"][:3]]
    return ", ".join(parts)


def greedy_chain(start: str, phrases: Sequence[str], similarity: Callable[[list[str]], torch.Tensor],
                 fits: Callable[[str], bool], min_flavors: int, max_flavors: int) -> tuple[str, list[tuple[str, float]]]:
    """From `start`, append each round the phrase whose prompt CLIP scores highest; go on while that
    improves on the best so far (always for `min_flavors` rounds), up to `max_flavors` phrases or the
    text encoder's context. Returns the best prompt seen and the (phrase, similarity) of each round."""
    prompt, best_prompt = start, start
    best = float(similarity([start])[0])
    left, steps = list(phrases), []
    while left and len(steps) < max_flavors:
        candidates = [f"{prompt}, {phrase}" for phrase in left]
        keep = [i for i, text in enumerate(candidates) if fits(text)]
        if not keep:
            break
        scores = similarity([candidates[i] for i in keep])
        pick = keep[int(torch.argmax(scores))]
        score = float(scores.max())
        if score <= best and len(steps) >= min_flavors:
            break
        prompt = candidates[pick]
        steps.append((left.pop(pick), score))
        if score > best:
            best, best_prompt = score, prompt
    return best_prompt, steps


# ---- captioner side --------------------------------------------------------------------------------

def caption_image(handle: Any, image: Any, max_new_tokens: int) -> str:
    """BLIP-2's unprompted caption (greedy, as the interrogator does); the 32 image slots are cut off."""
    inputs = handle.processor(images=image, text="", return_tensors="pt").to(handle.device, handle.model.dtype)
    with torch.inference_mode():
        ids = handle.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
    if not handle.model.language_model.config.is_encoder_decoder:
        ids = ids[:, inputs["input_ids"].shape[1]:]
    return handle.processor.batch_decode(ids, skip_special_tokens=True)[0].strip()


# ---- the pure run --------------------------------------------------------------------------------

def check_inputs(image: Any, caption_model: str, clip_model: str, mode: str, top_k: Any, min_flavors: Any,
                 max_flavors: Any, caption_tokens: Any) -> tuple:
    picture = rgb_image(image, "an image to interrogate")
    one_of(caption_model, "caption model", CAPTION_MODELS)
    one_of(clip_model, "CLIP model", CLIP_MODELS)
    one_of(mode, "mode", MODES)
    top_k = number_in_range(top_k, "The phrases shown per bank", 1, MAX_TOP_K, whole=True)
    max_flavors = number_in_range(max_flavors, "The most chain phrases", 1, MAX_FLAVORS, whole=True)
    min_flavors = number_in_range(min_flavors, "The fewest chain phrases", 0, max_flavors, whole=True)
    caption_tokens = number_in_range(caption_tokens, "The caption length", 1, MAX_CAPTION_TOKENS, whole=True)
    return picture, top_k, min_flavors, max_flavors, caption_tokens


def run_clip_interrogator(image: Any, caption_model: str = CAPTION_MODELS[0], clip_model: str = CLIP_MODELS[0],
                          mode: str = "best", top_k: int = 5, min_flavors: int = 2, max_flavors: int = 8,
                          caption_tokens: int = CAPTION_TOKENS, progress: ProgressFn | None = None) -> Interrogation:
    """Caption the image, rank every bank with CLIP, build the classic and chain prompts, and return
    the one asked for (`best`: the one CLIP scores highest)."""
    picture, top_k, min_flavors, max_flavors, caption_tokens = check_inputs(
        image, caption_model, clip_model, mode, top_k, min_flavors, max_flavors, caption_tokens)
    captioner, clip = models.get(caption_model, progress), models.get(clip_model, progress)
    started = time.perf_counter()
    caption = caption_image(captioner, picture, caption_tokens) or "a picture"  # random tiny weights may say nothing
    embedded = image_embedding(clip, picture)
    ranked = {name: rank(embedded, load_bank(name), bank_embeddings(clip, name), len(load_bank(name)))
              for name in BANKS}

    def similarity(texts: list[str]) -> torch.Tensor:
        return text_embeddings(clip, texts) @ embedded

    def fits(text: str) -> bool:
        return len(clip.processor.tokenizer(text, verbose=False)["input_ids"]) <= CLIP_CONTEXT

    candidates = {"caption": (caption, float(similarity([caption])[0]))}
    if mode in ("best", "classic"):
        classic = classic_prompt(caption, ranked)
        candidates["classic"] = (classic, float(similarity([classic])[0]))
    steps: list[tuple[str, float]] = []
    if mode in ("best", "chain"):
        pool = [phrase for phrase, _ in sorted((p for r in ranked.values() for p in r), key=lambda p: -p[1])]
        chain, steps = greedy_chain(caption, pool[:CHAIN_POOL], similarity, fits, min_flavors, max_flavors)
        candidates["chain"] = (chain, float(similarity([chain])[0]))
    chosen = max(candidates.values(), key=lambda c: c[1]) if mode == "best" else candidates[mode]
    return Interrogation(chosen[0], caption, {name: r[:top_k] for name, r in ranked.items()}, candidates, steps,
                         caption_model, clip_model, time.perf_counter() - started)


def compare_plan(prompt: str, seed: int = 0) -> str:
    """A Compare-tab plan (the JSON its "Re-run an exported comparison" takes) that generates the prompt
    with plain SD-1.5 for two seeds: the interrogator's "generate from this prompt", as a file."""
    prompt = str(prompt or "").strip()
    if not prompt:
        raise UserError("Interrogate an image first: there is no prompt to generate from yet.")
    plan = {"task": IMAGE.name, "methods": [SD_METHOD], "inputs": {"prompt": prompt, "seed": int(seed)},
            "sweep": "seed", "values": [int(seed), int(seed) + 1]}
    path = Path(tempfile.mkdtemp(prefix="pp-interrogator-")) / "generate-from-prompt.json"
    path.write_text(json.dumps(plan, indent=1, ensure_ascii=False))
    return str(path)


# ---- presentation --------------------------------------------------------------------------------

def bank_rows(result: Interrogation) -> list[list[Any]]:
    """One row per (bank, rank): the table under the prompt."""
    return [[name, place + 1, phrase, round(score, 4)] for name, ranked in result.banks.items()
            for place, (phrase, score) in enumerate(ranked)]


def describe(result: Interrogation) -> str:
    """The mechanism: each candidate prompt with its CLIP similarity, and the chain's rounds."""
    lines = [f"**{result.seconds:.2f} s** · caption by {result.caption_model}, ranking by {result.clip_model}",
             "", "| candidate | CLIP cosine with the image | prompt |", "|---|---|---|"]
    lines += [f"| {mode} | {score:.4f} | {text.replace('|', '/')} |" for mode, (text, score) in result.candidates.items()]
    if result.chain_steps:
        rounds = " → ".join(f"+{phrase} ({score:.4f})" for phrase, score in result.chain_steps)
        lines += ["", f"**Greedy chain** from the caption: {rounds}"]
    return "\n".join(lines)


def build_ui() -> None:
    import gradio as gr

    from demos.shared.handlers import user_errors

    gr.Markdown(
        "Recover a prompt for an image, as the **CLIP Interrogator** does: BLIP-2 captions the image, then "
        "CLIP ranks phrase banks (mediums, artists, art movements, flavours; small lists shipped in "
        "`assets/interrogator/`) by the cosine of their text embedding with the image embedding. *Classic* "
        "joins the caption and the best phrase of each bank; the *greedy chain* appends, round by round, the "
        "phrase that raises CLIP's similarity with the whole prompt most. *Best* keeps the highest-scoring prompt."
    )
    with gr.Row():
        with gr.Column(scale=2):
            image = gr.Image(label="Image", type="pil", image_mode=None, sources=["upload", "clipboard"], height=260,
                             elem_id="interrogator-image")
            with gr.Row():
                caption_model = gr.Dropdown(CAPTION_MODELS, value=CAPTION_MODELS[0], label="Caption model")
                clip_model = gr.Dropdown(CLIP_MODELS, value=CLIP_MODELS[0], label="CLIP model")
            mode = gr.Radio([(label, key) for key, label in MODES.items()], value="best", label="Mode")
            with gr.Accordion("Settings", open=False):
                top_k = gr.Slider(1, MAX_TOP_K, value=5, step=1, label="Top phrases shown per bank")
                min_flavors = gr.Slider(0, MAX_FLAVORS, value=2, step=1, label="Chain: fewest phrases")
                max_flavors = gr.Slider(1, MAX_FLAVORS, value=8, step=1, label="Chain: most phrases")
                caption_tokens = gr.Slider(1, MAX_CAPTION_TOKENS, value=CAPTION_TOKENS, step=1, label="Caption max tokens")
            run = gr.Button("Interrogate", variant="primary")
            gr.Examples([[str(ASSETS / name)] for name in ("chelsea.jpg", "astronaut.jpg", "coffee.jpg",
                                                            "rocket.jpg")],
                        inputs=[image], label="Examples (public-domain images from scikit-image)",
                        elem_id="interrogator-examples")
        with gr.Column(scale=3):
            prompt = gr.Textbox(label="Reconstructed prompt (copy it into an SD tab)", interactive=False, lines=2,
                                buttons=["copy"], elem_id="interrogator-prompt")
            send = gr.Button("Generate from this prompt (Compare plan, below)", size="sm")
            info = gr.Markdown(elem_id="interrogator-info")
            table = gr.Dataframe(headers=["bank", "rank", "phrase", "cosine"], label="Each bank's top phrases",
                                 interactive=False, max_height=320, elem_id="interrogator-banks")
            plan = gr.File(label="Compare plan: load this file in Compare → Re-run an exported comparison",
                           elem_id="interrogator-plan")

    @user_errors
    def interrogate_for_ui(image, caption_model, clip_model, mode, top_k, min_flavors, max_flavors, caption_tokens,
                           progress=gr.Progress(track_tqdm=True)):
        result = run_clip_interrogator(image, caption_model, clip_model, mode, top_k, min_flavors, max_flavors,
                                       caption_tokens, progress)
        return result.prompt, describe(result), bank_rows(result)

    run.click(interrogate_for_ui, [image, caption_model, clip_model, mode, top_k, min_flavors, max_flavors,
                                   caption_tokens], [prompt, info, table], api_name="clip_interrogator")
    send.click(user_errors(compare_plan), [prompt], plan, api_name="clip_interrogator_plan")
