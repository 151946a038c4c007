"""Visual question answering, two designs side by side: BLIP-2 (Li et al. 2023, "Bootstrapping
Language-Image Pre-training with Frozen Image Encoders and Large Language Models") and LLaVA (Liu et
al. 2023, "Visual Instruction Tuning"; LLaVA-1.5: "Improved Baselines with Visual Instruction Tuning").

BLIP-2 turns the image into 32 Q-Former query outputs that a frozen LLM reads as soft prompt tokens,
and answers a "Question: … Answer:" prompt ("… Short answer:" for Flan-T5, as in the paper's
evaluation), or captions with no prompt. LLaVA projects every
vision patch into the LLM (576 tokens for LLaVA-1.5) and was instruction-tuned to chat, so it gets
a multi-turn conversation rendered by its processor's chat template, and its answer is streamed.

InstructBLIP (Dai et al. 2023, "InstructBLIP: Towards General-purpose Vision-Language Models with
Instruction Tuning") can be picked on either side. It stands in for MiniGPT-4 (Zhu et al. 2023), which
feeds BLIP-2's frozen Q-Former into Vicuna through a single trained linear layer but has no transformers
class or maintained checkpoint: InstructBLIP is the same recipe (32 Q-Former queries → linear → Vicuna),
instruction-tuned, with a Q-Former that also reads the instruction. It answers each instruction on its own.

Nothing here writes the image or the conversation to disk; `export_conversation` does, on request.
"""
from __future__ import annotations

import json
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator, Sequence

import torch

import models
from demos import ASSETS
from demos.shared.comparison import PICTURE, Field, Method, Output, Task
from demos.shared.generation import resolve_seed
from demos.shared.inputs import MAX_PROMPT_CHARS, number_in_range, one_of, rgb_image
from models import ProgressFn, UserError
from models.vqa import IMAGE_TOKEN, available_quantizations, quantized_name

BLIP2_MODELS = ["blip2-opt-2.7b", "blip2-flan-t5-xl"]
LLAVA_MODELS = ["llava-1.5-7b", "llava-interleave-qwen-0.5b"]
INSTRUCTBLIP_MODELS = ["instructblip-vicuna-7b"]
LEFT_MODELS = BLIP2_MODELS + INSTRUCTBLIP_MODELS  # answered once (`answer_blip2`)
RIGHT_MODELS = LLAVA_MODELS + INSTRUCTBLIP_MODELS  # streamed into the chat (`stream_llava`)
INSTRUCTBLIP_CAPTION = "A short image description:"  # LAVIS's InstructBLIP captioning prompt
MODES = {"vqa": "Question answering", "caption": "Caption (no prompt)"}
STRATEGIES = {"greedy": "Greedy", "beam": "Beam search", "sample": "Sampling"}
MAX_QUESTION_CHARS = MAX_PROMPT_CHARS
MAX_NEW_TOKENS = 512
PENDING = "…"


@dataclass(frozen=True)
class Decoding:
    """How `generate()` picks tokens; the defaults of each side come from its paper's demo."""

    max_new_tokens: int = 64
    strategy: str = "greedy"  # greedy | beam | sample
    num_beams: int = 5
    temperature: float = 1.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0

    def checked(self) -> "Decoding":
        one_of(self.strategy, "decoding strategy", STRATEGIES)
        return replace(
            self,
            max_new_tokens=number_in_range(self.max_new_tokens, "The max new tokens", 1, MAX_NEW_TOKENS, whole=True),
            num_beams=number_in_range(self.num_beams, "The beams", 1, 8, whole=True),
            temperature=number_in_range(self.temperature, "The temperature", 0.01, 2.0),
            top_p=number_in_range(self.top_p, "The top-p", 0.01, 1.0),
            repetition_penalty=number_in_range(self.repetition_penalty, "The repetition penalty", 1.0, 2.0),
            seed=resolve_seed(self.seed))

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(max_new_tokens=self.max_new_tokens,
                                      repetition_penalty=self.repetition_penalty)
        if self.strategy == "sample":
            return dict(kwargs, do_sample=True, temperature=self.temperature, top_p=self.top_p, num_beams=1)
        return dict(kwargs, do_sample=False, num_beams=self.num_beams if self.strategy == "beam" else 1)


# The anchors' defaults: BLIP-2's HF demo (beam search, 5 beams, repetition penalty 1.5) and
# LLaVA's Gradio demo (temperature 0.2, top-p 0.7).
BLIP2_DECODING = Decoding(max_new_tokens=30, strategy="beam", num_beams=5, repetition_penalty=1.5)
LLAVA_DECODING = Decoding(max_new_tokens=200, strategy="sample", temperature=0.2, top_p=0.7)


@dataclass
class Answer:
    """One model's answer (or its error), with what reached the LLM."""

    model: str
    answer: str = ""
    prompt: str = ""  # the exact text given to the processor, image placeholder included
    image_tokens: int = 0  # positions of the LLM input that carry the image
    prompt_tokens: int = 0
    new_tokens: int = 0
    seconds: float = 0.0  # generation only, model loading excluded
    decoding: Decoding | None = None
    mechanism: str = ""
    error: str | None = None
    done: bool = True


@dataclass
class SideBySide:
    blip2: Answer
    llava: Answer
    question: str
    history: list[dict[str, str]] = field(default_factory=list)  # LLaVA chat including this turn
    seed: int = 0


# ---- prompt builders ---------------------------------------------------------------------------

def blip2_prompt(question: str, mode: str = "vqa", model: str = BLIP2_MODELS[0]) -> str:
    """BLIP-2's zero-shot VQA prompt from the paper's evaluation (LAVIS): "Question: … Answer:" for the
    OPT models, "Question: … Short answer:" for the Flan-T5 models; captioning sends no prompt at all.
    InstructBLIP was instruction-tuned: the question is the instruction, and captioning asks for one."""
    one_of(mode, "BLIP-2 mode", MODES)
    if model in INSTRUCTBLIP_MODELS:
        return INSTRUCTBLIP_CAPTION if mode == "caption" else question
    if mode == "caption":
        return ""
    return f"Question: {question} {'Short answer' if 'flan-t5' in model else 'Answer'}:"


def message_text(content: Any) -> str:
    """The text of a chat message as gradio's Chatbot sends it: a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    if isinstance(content, (list, tuple)):
        return "".join(message_text(part) for part in content)
    return ""


def llava_conversation(history: Sequence[dict], question: str) -> list[dict]:
    """Prior turns in order plus the new question, in the processor's chat format; the image rides
    in the first user turn only, so the template emits its `<image>` placeholder exactly once."""
    turns = [{"role": m["role"], "text": message_text(m["content"])} for m in history
             if m.get("role") in ("user", "assistant")]
    turns.append({"role": "user", "text": question})
    conversation = []
    for index, turn in enumerate(turns):
        content: list[dict] = [{"type": "image"}] if index == 0 else []
        conversation.append({"role": turn["role"], "content": content + [{"type": "text", "text": turn["text"]}]})
    return conversation


# ---- the two sides -----------------------------------------------------------------------------

def _handle(model: str, family_models: list[str], quantization: str | None, progress: ProgressFn | None) -> Any:
    one_of(model, "model", family_models)
    if quantization is not None and quantization not in available_quantizations():
        raise UserError(f"{quantization} loading needs a CUDA GPU and the bitsandbytes package.")
    return models.get(quantized_name(model, quantization), progress)


def _inputs(handle: Any, image: Any, prompt: str) -> Any:
    inputs = handle.processor(images=image, text=prompt, return_tensors="pt")
    return inputs.to(handle.device, handle.model.dtype)


def _decode(handle: Any, ids: torch.Tensor) -> str:
    return handle.processor.batch_decode(ids, skip_special_tokens=True)[0].strip()


def answer_blip2(image: Any, question: str, mode: str = "vqa", model: str = BLIP2_MODELS[0],
                 decoding: Decoding = BLIP2_DECODING, quantization: str | None = None,
                 progress: ProgressFn | None = None) -> Answer:
    """BLIP-2 (or InstructBLIP) answers or captions the image; the prompt tokens are cut off the output."""
    handle = _handle(model, LEFT_MODELS, quantization, progress)  # first: it names an unknown model plainly
    prompt = blip2_prompt(question, mode, model)
    inputs = _inputs(handle, image, prompt)
    started = time.perf_counter()
    torch.manual_seed(decoding.seed)
    with torch.inference_mode():
        ids = handle.model.generate(**inputs, **decoding.generate_kwargs())
    if not handle.model.language_model.config.is_encoder_decoder:  # decoder-only: prompt + continuation
        ids = ids[:, inputs["input_ids"].shape[1]:]
    return _answer(handle, model, prompt, inputs, ids, _decode(handle, ids), started, decoding)


def stream_llava(image: Any, history: Sequence[dict], question: str, model: str = LLAVA_MODELS[0],
                 decoding: Decoding = LLAVA_DECODING, quantization: str | None = None,
                 progress: ProgressFn | None = None) -> Iterator[Answer]:
    """LLaVA continues the chat; yields the answer growing token by token (beam search: once).
    InstructBLIP, picked on this side, answers the question as a single instruction (no history)."""
    from transformers import StoppingCriteria, TextIteratorStreamer

    handle = _handle(model, RIGHT_MODELS, quantization, progress)
    if handle.family == "instructblip":
        prompt = blip2_prompt(question, "vqa", model)
    else:
        prompt = handle.processor.apply_chat_template(llava_conversation(history, question),
                                                      add_generation_prompt=True)
    inputs = _inputs(handle, image, prompt)
    context = handle.model.config.text_config.max_position_embeddings
    if inputs["input_ids"].shape[1] + decoding.max_new_tokens > context:
        raise UserError(f"The conversation ({inputs['input_ids'].shape[1]} tokens with the image) plus "
                        f"{decoding.max_new_tokens} new tokens exceeds {model}'s {context}-token context: "
                        "press Clear chat to start a new one, or lower max new tokens.")
    kwargs = dict(inputs, **decoding.generate_kwargs())
    started = time.perf_counter()
    torch.manual_seed(decoding.seed)
    if decoding.strategy == "beam":  # transformers cannot stream beam search
        with torch.inference_mode():
            ids = handle.model.generate(**kwargs)[:, inputs["input_ids"].shape[1]:]
        yield _answer(handle, model, prompt, inputs, ids, _decode(handle, ids), started, decoding)
        return
    streamer = TextIteratorStreamer(handle.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    outcome: dict[str, Any] = {}
    dropped = threading.Event()

    class StopWhenDropped(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            return torch.full((input_ids.shape[0],), dropped.is_set(), dtype=torch.bool, device=input_ids.device)

    def generate() -> None:
        try:
            with torch.inference_mode():
                outcome["ids"] = handle.model.generate(**kwargs, streamer=streamer,
                                                       stopping_criteria=[StopWhenDropped()])
        except Exception as error:  # reported in the caller's thread
            outcome["error"] = error
            streamer.end()

    worker = threading.Thread(target=generate, daemon=True)
    worker.start()
    text = ""
    try:
        for piece in streamer:
            text += piece
            if piece.strip():
                yield Answer(model, text.strip(), prompt, decoding=decoding, done=False)
    finally:  # the reader left (closed tab, Stop, dropped connection): stop generating for nobody
        dropped.set()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    ids = outcome["ids"][:, inputs["input_ids"].shape[1]:]
    yield _answer(handle, model, prompt, inputs, ids, text.strip(), started, decoding)


def _answer(handle: Any, model: str, prompt: str, inputs: Any, ids: torch.Tensor, text: str, started: float,
            decoding: Decoding) -> Answer:
    image_tokens = int((inputs["input_ids"] == handle.image_token_id).sum())
    return Answer(model, text, prompt, image_tokens=image_tokens, prompt_tokens=int(inputs["input_ids"].shape[1]),
                  new_tokens=int(ids.shape[1]), seconds=time.perf_counter() - started, decoding=decoding,
                  mechanism=mechanism(handle, image_tokens))


def mechanism(handle: Any, image_tokens: int) -> str:
    """How the image reaches the language model, with this checkpoint's numbers."""
    config = handle.model.config
    vision = config.vision_config
    grid = vision.image_size // vision.patch_size
    llm = f"{config.text_config.model_type.upper()} LLM"
    if handle.family == "blip2":
        return (f"Image ({vision.image_size} px) → frozen ViT ({vision.num_hidden_layers} layers, {grid}×{grid} "
                f"patches + CLS = {grid * grid + 1} features) → **Q-Former**: {config.num_query_tokens} learned "
                f"queries cross-attend to those features → linear projection → **{image_tokens} image tokens** "
                f"in front of the prompt of the frozen {llm}. However large the image, the LLM sees "
                f"{config.num_query_tokens} tokens.")
    if handle.family == "instructblip":
        return (f"Image ({vision.image_size} px) → frozen ViT ({grid}×{grid} patches + CLS = {grid * grid + 1} "
                f"features) → **instruction-aware Q-Former**: {config.num_query_tokens} learned queries *and the "
                f"instruction's tokens* (its own BERT tokenizer) attend to each other and cross-attend to those "
                f"features → linear projection → **{image_tokens} image tokens** in front of the instruction for "
                f"the {llm} (Vicuna). Stands in for **MiniGPT-4** (BLIP-2's Q-Former → one linear layer → Vicuna; "
                "no transformers class or maintained checkpoint): same 32-token bridge into Vicuna, instruction-"
                "tuned. Each instruction is answered on its own; earlier turns are not sent.")
    kept = "CLS dropped" if config.vision_feature_select_strategy == "default" else "all patches"
    return (f"Image ({vision.image_size} px) → {vision.model_type.split('_')[0].upper()} vision tower "
            f"({grid}×{grid} patches, layer {config.vision_feature_layer}, {kept}) → 2-layer MLP projector → "
            f"**{image_tokens} image tokens** replace `<image>` in the chat prompt of the {llm}, "
            "which was instruction-tuned on such conversations.")


# ---- side by side ------------------------------------------------------------------------------

def _failed(model: str, error: UserError) -> Answer:
    """A model that cannot be loaded, or a request it cannot take, is reported on its side only."""
    return Answer(model, error=str(error))


def validate_question(question: Any) -> str:
    text = str(question or "").strip()
    if not text:
        raise UserError("Please type a question about the image (BLIP-2's caption mode ignores it; LLaVA "
                        "answers it).")
    if len(text) > MAX_QUESTION_CHARS:
        raise UserError(f"The question is {len(text)} characters long; keep it under {MAX_QUESTION_CHARS}.")
    if IMAGE_TOKEN in text:
        raise UserError(f"{IMAGE_TOKEN} is where the models put the image; please leave it out of the question.")
    return text


def run_vqa(image: Any, question: str, history: Sequence[dict] | None = None,
            blip2_model: str = BLIP2_MODELS[0], llava_model: str = LLAVA_MODELS[0], mode: str = "vqa",
            blip2_decoding: Decoding = BLIP2_DECODING, llava_decoding: Decoding = LLAVA_DECODING,
            seed: int = 0, quantization: str | None = None,
            progress: ProgressFn | None = None) -> Iterator[SideBySide]:
    """Ask both models about one image. Yields BLIP-2's answer first, then LLaVA's as it streams;
    the last item holds both final answers and the chat history including this turn. A side that
    fails shows its error while the other still answers."""
    picture = rgb_image(image, "an image to ask about")
    text = validate_question(question)
    blip2_prompt(text, mode)  # rejects an unknown mode before any model loads
    seed = resolve_seed(seed)
    blip2_decoding, llava_decoding = (replace(d, seed=seed).checked() for d in (blip2_decoding, llava_decoding))
    prior = list(history or [])
    try:
        blip2 = answer_blip2(picture, text, mode, blip2_model, blip2_decoding, quantization, progress)
    except UserError as error:
        blip2 = _failed(blip2_model, error)
    llava = Answer(llava_model, PENDING, done=False)
    yield SideBySide(blip2, llava, text, prior + _turn(text, llava), seed)
    try:
        for llava in stream_llava(picture, prior, text, llava_model, llava_decoding, quantization, progress):
            yield SideBySide(blip2, llava, text, prior + _turn(text, llava), seed)
    except UserError as error:
        llava = _failed(llava_model, error)
        yield SideBySide(blip2, llava, text, prior + _turn(text, llava), seed)


def _turn(question: str, answer: Answer) -> list[dict[str, str]]:
    """This exchange for the chat; a failed one is left out so it never becomes context for the next."""
    if answer.error is not None:
        return []
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer.answer}]


def ask(*args: Any, **kwargs: Any) -> SideBySide:
    """`run_vqa` without streaming: the final side-by-side result."""
    *_, last = run_vqa(*args, **kwargs)
    return last


ANSWER = Task("image + question → answer", (PICTURE, Field("question", "Question")))


def _compare_adapter(model: str):
    """One Compare cell: a single-turn answer from `model` through this tab's own functions."""
    def run(image: Any, question: str) -> Output:
        picture, text = rgb_image(image, "an image to ask about"), validate_question(question)
        if model in LEFT_MODELS:
            answer = answer_blip2(picture, text, model=model)
        else:
            *_, answer = stream_llava(picture, [], text, model=model)
        return Output(text=answer.answer)
    return run


COMPARE_METHODS = [Method(ANSWER, model, _compare_adapter(model), {"question": ""})
                   for model in BLIP2_MODELS + INSTRUCTBLIP_MODELS + LLAVA_MODELS]


def export_conversation(history: Sequence[dict], blip2: dict | None = None) -> str:
    """Write the chat (and BLIP-2's last answer) to a JSON file for download — only when asked."""
    folder = Path(tempfile.mkdtemp(prefix="pp-vqa-"))
    path = folder / "conversation.json"
    payload = {"llava_chat": [{"role": m["role"], "content": message_text(m["content"])} for m in history],
               "blip2": blip2 or {}}
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False))
    return str(path)


# ---- presentation ------------------------------------------------------------------------------

def describe(answer: Answer) -> str:
    """The latency line and mechanism of one side, or its error."""
    if answer.error:
        return f"⚠️ **{answer.model} could not answer:** {answer.error}"
    if not answer.done:
        return f"**{answer.model}** · generating …"
    d = answer.decoding
    how = {"greedy": "greedy", "beam": f"beam search ({d.num_beams} beams)",
           "sample": f"sampling (T={d.temperature:g}, top-p={d.top_p:g}, seed {d.seed})"}[d.strategy] if d else ""
    return (f"**{answer.model}** · {answer.seconds:.2f} s for {answer.new_tokens} new tokens ({how}) · "
            f"{answer.image_tokens} image tokens of {answer.prompt_tokens} input tokens\n\n{answer.mechanism}")


def _model_choices(names: list[str]) -> list[tuple[str, str]]:
    """Dropdown labels that show each checkpoint's download size on this machine before anything loads."""
    return [(f"{name} · {models.model_cache.plan(models.REGISTRY[name])[0].nbytes / 1e9:.1f} GB", name)
            for name in names]  # short: the
    # picker is a third of a projector's width (the checkpoints are listed in the Models panel)


def _default_llava() -> str:
    """LLaVA-1.5-7B where a GPU can hold it; the 0.9B interleave model on a laptop CPU."""
    return LLAVA_MODELS[0] if torch.cuda.is_available() else LLAVA_MODELS[1]


def decoding_controls(defaults: Decoding) -> list:
    """One side's decoding widgets, in `Decoding`'s field order."""
    import gradio as gr

    with gr.Row():
        strategy = gr.Radio([(label, key) for key, label in STRATEGIES.items()], value=defaults.strategy,
                            label="Decoding")
        max_new = gr.Slider(1, MAX_NEW_TOKENS, value=defaults.max_new_tokens, step=1, label="Max new tokens")
    with gr.Row():
        beams = gr.Slider(1, 8, value=defaults.num_beams, step=1, label="Beams")
        temperature = gr.Slider(0.01, 2.0, value=defaults.temperature, step=0.01, label="Temperature")
        top_p = gr.Slider(0.01, 1.0, value=defaults.top_p, step=0.01, label="Top-p")
        penalty = gr.Slider(1.0, 2.0, value=defaults.repetition_penalty, step=0.05, label="Repetition penalty")
    return [max_new, strategy, beams, temperature, top_p, penalty]


def layout() -> SimpleNamespace:
    """The tab's widgets, placed; `build_ui` wires them."""
    import gradio as gr

    from demos.shared.widgets import seed_controls

    gr.Markdown(
        "Ask a question about an image and compare two ways of feeding an image to a language model. "
        "**BLIP-2** compresses the image into 32 Q-Former query tokens for a frozen LLM and answers a "
        "`Question: … Answer:` prompt (`… Short answer:` for Flan-T5, as in the paper) or captions with no prompt. "
        "**LLaVA** projects every image patch "
        "into an instruction-tuned LLM and chats (follow-up questions keep the conversation). **InstructBLIP** "
        "can be picked on either side: it stands in for **MiniGPT-4** (BLIP-2's Q-Former fed into Vicuna through "
        "one linear layer), which has no transformers class or maintained checkpoint: the same 32 query tokens "
        "into Vicuna, instruction-tuned, with a Q-Former that also reads the question. Models load "
        "on first use; sizes are shown in the pickers. Nothing you upload or ask is written to disk unless "
        "you press *Save conversation*."
    )

    with gr.Row():
        with gr.Column(scale=2):
            image = gr.Image(label="Image", type="pil", image_mode=None, sources=["upload", "clipboard", "webcam"],
                             height=300)
            question = gr.Textbox(label="Question", placeholder="What is in this picture?", lines=2,
                                  max_length=MAX_QUESTION_CHARS)
            with gr.Row():
                ask_button = gr.Button("Ask", variant="primary")
                regenerate = gr.Button("Regenerate")
                clear = gr.Button("Clear chat")
            quantizations = available_quantizations()
            precision = gr.Radio([("fp16 on GPU / fp32 on CPU", "none")] + [(q, q) for q in quantizations],
                                 value="none", label="Weights", visible=bool(quantizations),
                                 info="8-bit / 4-bit loading through bitsandbytes (CUDA only)")
            seed, randomize = seed_controls()
        with gr.Column(scale=3):
            with gr.Row(equal_height=False):
                with gr.Column():
                    gr.Markdown("### BLIP-2 · InstructBLIP")
                    blip2_model = gr.Dropdown(_model_choices(LEFT_MODELS), value=BLIP2_MODELS[0], label="Model",
                                              elem_classes="vqa-model")
                    mode = gr.Radio([(label, key) for key, label in MODES.items()], value="vqa", label="Mode")
                    blip2_answer = gr.Textbox(label="Answer", interactive=False, elem_id="vqa-blip2-answer")
                    blip2_info = gr.Markdown(elem_id="vqa-blip2-info")
                    blip2_sent = gr.Textbox(label="Exact prompt sent (after the 32 image tokens)",
                                            interactive=False, elem_id="vqa-blip2-prompt")
                with gr.Column():
                    gr.Markdown("### LLaVA · InstructBLIP")
                    llava_model = gr.Dropdown(_model_choices(RIGHT_MODELS), value=_default_llava(), label="Model",
                                              elem_classes="vqa-model")
                    chat = gr.Chatbot(label="Chat", height=440, elem_id="vqa-llava-chat")  # question and answer in view
                    llava_info = gr.Markdown(elem_id="vqa-llava-info")
                    llava_sent = gr.Textbox(label="Exact prompt sent (chat template; <image> becomes the patch "
                                                  "tokens)", interactive=False, lines=3, elem_id="vqa-llava-prompt")
    with gr.Accordion("Decoding settings", open=False):
        with gr.Row():
            with gr.Column():
                gr.Markdown("**BLIP-2** (paper demo: beam search, 5 beams, repetition penalty 1.5)")
                blip2_controls = decoding_controls(BLIP2_DECODING)
            with gr.Column():
                gr.Markdown("**LLaVA** (LLaVA demo: sampling, temperature 0.2, top-p 0.7)")
                llava_controls = decoding_controls(LLAVA_DECODING)
    with gr.Accordion("Save conversation", open=False):
        gr.Markdown("Writes the LLaVA chat and BLIP-2's last answer to a JSON file for you to download.")
        with gr.Row():
            save = gr.Button("Save conversation", size="sm")
            saved = gr.File(label="Conversation (JSON)", height=80)
    gr.Examples(
        examples=[[str(ASSETS / "chelsea.jpg"), "What animal is this?"],
                  [str(ASSETS / "astronaut.jpg"), "What is the person wearing?"],
                  [str(ASSETS / "coffee.jpg"), "What is in the cup?"],
                  [str(ASSETS / "rocket.jpg"), "What is happening in this picture?"],
                  [str(ASSETS / "camera.jpg"), "What is the man holding?"]],
        inputs=[image, question], label="Examples (public-domain images from scikit-image)",
    )
    return SimpleNamespace(
        image=image, question=question, ask=ask_button, regenerate=regenerate, clear=clear, save=save, saved=saved,
        answers=[blip2_answer, blip2_info, blip2_sent, chat, llava_info, llava_sent, seed],
        settings=[blip2_model, mode, llava_model, precision, seed, randomize, *blip2_controls, *llava_controls],
        blip2_answer=blip2_answer, blip2_sent=blip2_sent, chat=chat)


def build_ui() -> None:
    import gradio as gr

    from demos.shared.handlers import user_errors

    w = layout()

    @user_errors
    def ask_for_ui(image, question, history, blip2_model, mode, llava_model, precision, seed, randomize,
                   blip2_max_new_tokens, blip2_strategy, blip2_num_beams, blip2_temperature, blip2_top_p,
                   blip2_repetition_penalty, llava_max_new_tokens, llava_strategy, llava_num_beams, llava_temperature,
                   llava_top_p, llava_repetition_penalty, progress=gr.Progress(track_tqdm=True)):
        """Both models answer; LLaVA continues the chat in `history`. Every parameter is named, so the
        /vqa endpoint's are too."""
        blip2_decoding = Decoding(blip2_max_new_tokens, blip2_strategy, blip2_num_beams, blip2_temperature,
                                  blip2_top_p, blip2_repetition_penalty)
        llava_decoding = Decoding(llava_max_new_tokens, llava_strategy, llava_num_beams, llava_temperature,
                                  llava_top_p, llava_repetition_penalty)
        for result in run_vqa(image, question, history, blip2_model, llava_model, mode, blip2_decoding,
                              llava_decoding, resolve_seed(seed, bool(randomize)),
                              None if precision == "none" else precision, progress):
            yield (result.blip2.answer, describe(result.blip2), result.blip2.prompt, result.history,
                   describe(result.llava), result.llava.prompt, result.seed)

    @user_errors
    def regenerate_for_ui(image, history, blip2_model, mode, llava_model, precision, seed, randomize,
                          blip2_max_new_tokens, blip2_strategy, blip2_num_beams, blip2_temperature, blip2_top_p,
                          blip2_repetition_penalty, llava_max_new_tokens, llava_strategy, llava_num_beams,
                          llava_temperature, llava_top_p, llava_repetition_penalty,
                          progress=gr.Progress(track_tqdm=True)):
        """Drop LLaVA's last answer and ask the last question again (BLIP-2 answers it again too)."""
        users = [i for i, message in enumerate(history or []) if message["role"] == "user"]
        if not users:
            raise UserError("Nothing to regenerate yet: ask a question first.")
        last = users[-1]
        yield from ask_for_ui(image, message_text(history[last]["content"]), history[:last], blip2_model, mode,
                              llava_model, precision, seed, randomize, blip2_max_new_tokens, blip2_strategy,
                              blip2_num_beams, blip2_temperature, blip2_top_p, blip2_repetition_penalty,
                              llava_max_new_tokens, llava_strategy, llava_num_beams, llava_temperature, llava_top_p,
                              llava_repetition_penalty, progress)

    def clear_for_ui():
        return "", "", "", [], "", "", None

    gr.on([w.ask.click, w.question.submit], ask_for_ui, inputs=[w.image, w.question, w.chat, *w.settings],
          outputs=w.answers, api_name="vqa")
    w.regenerate.click(regenerate_for_ui, inputs=[w.image, w.chat, *w.settings], outputs=w.answers,
                       api_name="vqa_regenerate")
    w.clear.click(clear_for_ui, outputs=[*w.answers[:6], w.saved], api_name="vqa_clear")
    w.save.click(user_errors(lambda history, answer, prompt: export_conversation(
        history or [], {"answer": answer, "prompt": prompt})), inputs=[w.chat, w.blip2_answer, w.blip2_sent],
        outputs=w.saved, api_name="vqa_save")
