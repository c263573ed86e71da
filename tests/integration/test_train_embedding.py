"""Textual inversion on the tiny checkpoints: create, train (loss, frozen weights, copies), interrupt, resume."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch
from PIL import Image

from modules import (
    devices,
    hypernetworks,
    lowvram,
    processing,
    prompt_encoding,
    sd_models,
    textual_inversion,
    textual_inversion_training as tit,
)
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from modules.shared_state import state
from tests.integration.engine_helpers import start_engine

SD1 = "tiny_sd1"
SDXL = "tiny_sdxl"
COLOURS = [(220, 40, 40), (40, 200, 60), (50, 60, 230), (230, 220, 40)]


def start_training_engine(monkeypatch, models_dir: Path, data_dir: Path):
    manager = start_engine(models_dir, data_dir)
    monkeypatch.setattr(cmd_opts, "embeddings_dir", str(data_dir / "embeddings"))
    monkeypatch.setattr(cmd_opts, "hypernetwork_dir", str(data_dir / "hypernetworks"))
    monkeypatch.setattr(cmd_opts, "no_hashing", True)
    textual_inversion._databases.clear()
    hypernetworks.hypernetworks.clear()
    return manager


def write_dataset(folder: Path, size: int = 64) -> Path:
    """4 images: a coloured square on a gradient each; two captioned by .txt files, two by their file names."""
    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    for i, colour in enumerate(COLOURS):
        pixels = np.zeros((size, size, 3), dtype=np.float32)
        pixels[...] = ramp[None, :, None] * 0.3
        pixels[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = colour
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:02d}-shape {i}.png")
    (folder / "00-shape 0.txt").write_text("red square, gradient", encoding="utf8")
    (folder / "01-shape 1.txt").write_text("green square, gradient", encoding="utf8")
    return folder


def weights(model) -> dict[str, torch.Tensor]:
    """Every weight of the checkpoint, copied, by component."""
    parts = {"unet": model.unet, "vae": model.vae, **model.text_encoders}
    return {f"{name}.{key}": value.detach().clone() for name, part in parts.items()
            for key, value in part.state_dict().items()}


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    assert before.keys() == after.keys()
    return [key for key in before if not torch.equal(before[key], after[key])]


def grad_flags(model) -> set[str]:
    parts = {"unet": model.unet, "vae": model.vae, **model.text_encoders}
    return {f"{name}.{key}" for name, part in parts.items() for key, p in part.named_parameters() if p.requires_grad}


@pytest.fixture()
def engine(monkeypatch, tiny_models_dir, tmp_path):
    return start_training_engine(monkeypatch, tiny_models_dir, tmp_path)


@pytest.fixture()
def dataset(tmp_path):
    return write_dataset(tmp_path / "dataset")


def model_of(title: str):
    opts.set("sd_model_checkpoint", title)
    return processing.main_model(processing.StableDiffusionProcessing())


def token_rows(model, encoder: str, tokenizer: str, text: str) -> torch.Tensor:
    te = model.text_encoders[encoder]
    ids = model.tokenizers[tokenizer](text, add_special_tokens=False)["input_ids"]
    return getattr(te, "text_model", te).embeddings.token_embedding.weight.detach()[ids]


def train(name, data, **kwargs):
    args = {"learn_rate": "0.05", "batch_size": 2, "data_root": str(data), "training_width": 64, "training_height": 64,
            "steps": 20, "create_image_every": 0, "save_embedding_every": 0, "template_filename": "subject_filewords.txt",
            "seed": 7}
    args.update(kwargs)
    return tit.train_embedding(name, **args)


def test_create_embedding_spreads_the_init_text_tokens_over_the_vectors(engine):
    model = model_of(SD1)
    filename = textual_inversion.create_embedding("my emb", 3, False, init_text="red cube", model=model)
    assert filename == os.path.join(os.path.dirname(filename), "my emb.pt")
    data = torch.load(filename, weights_only=True)
    assert set(data) == {"string_to_token", "string_to_param", "name", "step", "sd_checkpoint", "sd_checkpoint_name"}
    assert data["name"] == "my emb" and data["step"] == 0
    rows = token_rows(model, "text_encoder", "tokenizer", "red cube")
    assert rows.shape[0] == 2
    expected = torch.stack([rows[0], rows[0], rows[1]])  # vector i takes token i * 2 // 3
    assert torch.equal(data["string_to_param"]["*"], expected)
    loaded = textual_inversion.embedding_db().usable_for(model)["my emb"]  # loaded at once
    assert loaded.vectors == 3 and loaded.step == 0
    encoder = prompt_encoding.PromptEncoder(model, embeddings={"my emb": loaded})
    encoder.get_learned_conditioning(["a photo of my emb"])
    assert set(encoder.used_embeddings) == {"my emb"}


def test_create_embedding_errors(engine):
    model = model_of(SD1)
    with pytest.raises(ValueError, match="Name cannot be empty"):
        textual_inversion.create_embedding("  /// ", 1, False, model=model)
    with pytest.raises(ValueError, match="between 1 and 75"):
        textual_inversion.create_embedding("x", 0, False, model=model)
    first = textual_inversion.create_embedding("twice", 1, False, init_text="red", model=model)
    with pytest.raises(ValueError, match="twice.pt already exists"):
        textual_inversion.create_embedding("twice", 2, False, model=model)
    assert textual_inversion.create_embedding("twice", 2, True, init_text="", model=model) == first
    assert torch.equal(torch.load(first, weights_only=True)["string_to_param"]["*"], torch.zeros(2, 64))


def test_sdxl_create_writes_clip_l_and_clip_g(engine):
    model = model_of(SDXL)
    filename = textual_inversion.create_embedding("xl", 2, False, init_text="blue", model=model)
    assert filename.endswith("xl.safetensors")
    tensors = safetensors.torch.load_file(filename)
    assert set(tensors) == {"clip_l", "clip_g"}
    assert torch.equal(tensors["clip_l"], token_rows(model, "text_encoder", "tokenizer", "blue").repeat(2, 1))
    assert torch.equal(tensors["clip_g"], token_rows(model, "text_encoder_2", "tokenizer_2", "blue").repeat(2, 1))
    assert "xl" in textual_inversion.embedding_db().usable_for(model)


def data_loss(model, data, name: str) -> float:
    """Mean loss over the 4 images with fixed noise and timesteps, with the embedding's file as it is now."""
    db = textual_inversion.embedding_db()
    db.load_textual_inversion_embeddings(force_reload=True)
    encoder = tit.prompt_encoder(model, db.usable_for(model))
    template = tit.training_dataset.template_path("subject_filewords.txt")
    ds = tit.training_dataset.PersonalizedBase(str(data), 64, 64, name, model, template, batch_size=4,
                                               latent_sampling_method="deterministic", seed=0)
    batch = ds.make_batch(ds.entries)
    batch.cond_texts = [f"a photo of a {name}, {e.caption}" for e in ds.entries]
    g = torch.Generator().manual_seed(123)
    total = 0.0
    with torch.no_grad():
        cond = tit.encode(encoder, batch.cond_texts)
        for _ in range(8):
            noise = torch.randn(batch.latents.shape, generator=g)
            timesteps = torch.randint(0, 1000, (4,), generator=g)
            total += float(tit.diffusion_loss(model, batch.latents, cond, noise, timesteps))
    return total / 8


def test_training_lowers_the_loss_changes_only_the_embedding_and_saves_copies(engine, dataset):
    model = model_of(SD1)
    filename = textual_inversion.create_embedding("trained", 2, False, init_text="cube", model=model)
    before_vec = torch.load(filename, weights_only=True)["string_to_param"]["*"]
    before_loss = data_loss(model, dataset, "trained")
    before, flags = weights(model), grad_flags(model)
    trained, final, message = train("trained", dataset, save_embedding_every=5)
    assert changed(before, weights(model)) == []
    assert grad_flags(model) == flags == set()
    assert not model.unet.training and not model.vae.training
    assert final == filename and "finished at 20 steps" in message
    data = torch.load(filename, weights_only=True)
    assert data["step"] == 20 and data["sd_checkpoint_name"] == model.sd_checkpoint_info.model_name
    assert not torch.equal(data["string_to_param"]["*"], before_vec)
    assert trained.step == 20 and torch.equal(trained.vec, data["string_to_param"]["*"])
    assert data_loss(model, dataset, "trained") < before_loss
    copies = tit.log_folder("textual_inversion", "trained")
    saved = sorted(os.listdir(os.path.join(copies, "embeddings")))
    assert saved == ["trained-10.pt", "trained-15.pt", "trained-20.pt", "trained-5.pt"]
    for n in (5, 10, 15, 20):
        copy = torch.load(os.path.join(copies, "embeddings", f"trained-{n}.pt"), weights_only=True)
        assert (copy["step"], copy["name"]) == (n, f"trained-{n}")
    assert torch.equal(copy["string_to_param"]["*"], data["string_to_param"]["*"])
    assert state.job == "" and "Step: 20" in state.textinfo


@pytest.mark.parametrize("schedule", ["0.005:abc", "fast", "0.1:10:20", "-1", ""])
def test_malformed_schedule_is_a_clear_error_before_training(engine, dataset, schedule):
    model = model_of(SD1)
    filename = textual_inversion.create_embedding("sched", 1, False, model=model)
    stamp = os.path.getmtime(filename)
    with pytest.raises(ValueError, match="Invalid learning rate schedule"):
        train("sched", dataset, learn_rate=schedule)
    assert os.path.getmtime(filename) == stamp
    assert not os.path.exists(tit.log_folder("textual_inversion", "sched"))


def test_interrupt_keeps_a_usable_embedding(engine, dataset):
    model = model_of(SD1)
    textual_inversion.create_embedding("stopper", 1, False, model=model)
    seen = []

    def stop_at_three(step, loss):
        seen.append(step)
        if step == 3:
            state.interrupt()

    _, final, message = train("stopper", dataset, steps=50, batch_size=1, callback=stop_at_three)
    assert seen == [1, 2, 3] and "interrupted at 3 steps" in message
    loaded = textual_inversion.load_embedding_file(final)
    assert loaded.step == 3 and loaded.vec.shape == (1, 64) and torch.isfinite(loaded.vec).all()
    assert "stopper" in textual_inversion.embedding_db().usable_for(model)


def test_resume_continues_from_the_saved_step(engine, dataset):
    model = model_of(SD1)
    textual_inversion.create_embedding("resumed", 1, False, model=model)
    train("resumed", dataset, steps=2, batch_size=1)
    steps_seen = []
    _, final, _ = train("resumed", dataset, steps=4, batch_size=1, save_embedding_every=1,
                        callback=lambda step, loss: steps_seen.append(step))
    assert steps_seen == [3, 4] and state.sampling_steps == 2
    assert torch.load(final, weights_only=True)["step"] == 4
    copies = os.path.join(tit.log_folder("textual_inversion", "resumed"), "embeddings")
    assert sorted(os.listdir(copies)) == ["resumed-3.pt", "resumed-4.pt"]
    with pytest.raises(ValueError, match="already been trained for 4 steps"):
        train("resumed", dataset, steps=4)


def test_schedule_sets_the_optimizer_rate_per_step(engine, dataset, monkeypatch):
    model = model_of(SD1)
    textual_inversion.create_embedding("rates", 1, False, model=model)
    rates = []
    original = torch.optim.AdamW.step

    def record(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", record)
    train("rates", dataset, learn_rate="0.1:1, 0.01:2, 0.001", steps=3, batch_size=1, gradient_step=2)
    assert rates == [0.1, 0.01, 0.001]  # one optimizer step per two batches


def test_preview_images_are_saved_at_the_interval(engine, dataset):
    model = model_of(SD1)
    textual_inversion.create_embedding("pics", 1, False, model=model)
    train("pics", dataset, steps=2, create_image_every=2, preview_from_txt2img=True, preview_prompt="pics",
          preview_steps=2, preview_width=64, preview_height=64, preview_sampler_name="Euler")
    folder = os.path.join(tit.log_folder("textual_inversion", "pics"), "images")
    assert sorted(os.listdir(folder)) == ["pics-2.png"]
    assert state.current_image is not None and state.current_image.size == (64, 64)


def test_sdxl_training_changes_both_vector_sets_only(engine, dataset):
    model = model_of(SDXL)
    filename = textual_inversion.create_embedding("xlt", 1, False, init_text="cube", model=model)
    start = safetensors.torch.load_file(filename)
    before = weights(model)
    train("xlt", dataset, steps=2, batch_size=1)
    assert changed(before, weights(model)) == []
    end = safetensors.torch.load_file(filename)
    assert not torch.equal(start["clip_l"], end["clip_l"]) and not torch.equal(start["clip_g"], end["clip_g"])
    with safetensors.safe_open(filename, framework="pt") as f:
        assert f.metadata()["step"] == "2"


def test_training_under_medvram_and_lowvram_gives_the_normal_embedding(engine, dataset):
    """Offloading moves the frozen weights part by part during the forward and backward passes; the trained vectors
    must be those of the normal mode exactly (CPU "device": every move is still a real copy)."""
    trained = {}
    try:
        for mode in ("normal", "medvram", "lowvram"):
            plan = devices.DevicePlan(torch.device("cpu"), torch.float32, torch.float32, mode)
            sd_models.model_manager = sd_models.ModelManager(plan, engine.cache_dir, limit=3)
            filename = textual_inversion.create_embedding(f"emb {mode}", 2, False, init_text="red", model=model_of(SD1))
            initial = textual_inversion.load_embedding_file(filename).vec
            trained[mode] = train(f"emb {mode}", dataset, steps=3)[0].vec
    finally:
        lowvram.send_everything_to_cpu()
    assert not torch.equal(trained["normal"], initial)
    assert torch.equal(trained["medvram"], trained["normal"]) and torch.equal(trained["lowvram"], trained["normal"])
