"""Train tab extras on the tiny SD1 checkpoint: previews carrying the embedding in a PNG chunk (and loading such a PNG
from the embeddings folder), the loss CSV, and the optimizer state saved beside each file and loaded on resume."""
from __future__ import annotations

import copy
import csv
import os
import shutil

import gradio as gr
import pytest
import torch
from PIL import Image

from modules import (
    hypernetwork_training,
    hypernetworks,
    image_embedding,
    textual_inversion,
    textual_inversion_training as tit,
    ui_train,
)
from modules.shared_options import opts
from tests.integration.test_train_embedding import SD1, dataset, engine, model_of  # noqa: F401  (fixtures)

CSV_HEADER = ["step", "epoch", "epoch_step", "loss", "learn_rate"]


@pytest.fixture()
def training_opts():
    saved = (opts.save_optimizer_state, opts.training_write_csv_every)
    yield
    opts.set("save_optimizer_state", saved[0])
    opts.set("training_write_csv_every", saved[1])


def train(name, data, **kwargs):
    args = {"learn_rate": "0.05", "batch_size": 1, "data_root": str(data), "training_width": 64, "training_height": 64,
            "steps": 2, "create_image_every": 0, "save_embedding_every": 0, "template_filename": "subject.txt",
            "seed": 5}
    args.update(kwargs)
    return tit.train_embedding(name, **args)


def conditioning(model, embeddings: dict, prompt: str) -> torch.Tensor:
    return tit.encode(tit.prompt_encoder(model, embeddings), [prompt]).context


def read_csv(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf8") as file:
        return list(csv.reader(file))


def test_chunk_round_trip_gives_the_same_vectors_and_fields():
    vec = torch.randn(3, 64) / 7
    data = textual_inversion.Embedding("thing", vec, step=12, sd_checkpoint="abcdef0123",
                                       sd_checkpoint_name="tiny").data()
    back = image_embedding.embedding_from_b64(image_embedding.embedding_to_b64(data))
    assert torch.equal(back["string_to_param"]["*"], vec)  # float32 through JSON is exact
    assert back["string_to_token"] == {"*": 265}
    assert (back["name"], back["step"], back["sd_checkpoint"], back["sd_checkpoint_name"]) == (
        "thing", 12, "abcdef0123", "tiny")
    sdxl = textual_inversion.Embedding("xl", {"clip_l": torch.randn(1, 8), "clip_g": torch.randn(1, 16)}, step=1).data()
    back = image_embedding.embedding_from_b64(image_embedding.embedding_to_b64(sdxl))
    assert torch.equal(back["clip_l"], sdxl["clip_l"]) and torch.equal(back["clip_g"], sdxl["clip_g"])
    with pytest.raises(ValueError, match="does not hold embedding data"):
        image_embedding.embedding_from_b64("not base64!")


def test_caption_keeps_the_size_and_shades_only_the_edges():
    image = Image.new("RGB", (96, 128), (200, 200, 200))
    captioned = image_embedding.caption_image_overlay(image, "<thing-4>", "tiny_sd1", "[0123456789]", "2v 4s")
    assert captioned.size == image.size and captioned.mode == "RGBA"
    assert captioned.getpixel((48, 64))[:3] == (200, 200, 200)  # the middle is untouched
    assert captioned.getpixel((1, 0))[0] < 100 and captioned.getpixel((1, 127))[0] < 100  # edges shaded
    assert image.getpixel((1, 0)) == (200, 200, 200)  # the source image is left as it was


def test_preview_png_carries_the_embedding_and_loads_from_the_embeddings_folder(engine, dataset, tmp_path):
    model = model_of(SD1)
    textual_inversion.create_embedding("pngemb", 2, False, init_text="cube", model=model)
    train("pngemb", dataset, steps=2, create_image_every=2, save_embedding_every=2, preview_from_txt2img=True,
          preview_prompt="pngemb", preview_steps=2, preview_width=64, preview_height=64, preview_sampler_name="Euler")
    folder = tit.log_folder("textual_inversion", "pngemb")
    assert os.listdir(os.path.join(folder, "image_embeddings")) == ["pngemb-2.png"]
    png = os.path.join(folder, "image_embeddings", "pngemb-2.png")
    copy_file = os.path.join(folder, "embeddings", "pngemb-2.pt")
    with Image.open(png) as opened:
        assert opened.size == (64, 64)
        data = image_embedding.embedding_from_b64(opened.text["sd-ti-embedding"])
    assert data["name"] == "pngemb-2" and data["step"] == 2
    assert torch.equal(data["string_to_param"]["*"], torch.load(copy_file, weights_only=True)["string_to_param"]["*"])

    # dropped into the embeddings folder under another file name, it loads by the chunk's name
    embeddings_dir = tmp_path / "embeddings"
    shutil.copy(png, embeddings_dir / "renamed.png")
    Image.new("RGB", (8, 8)).save(embeddings_dir / "plain.png")  # a preview without the chunk: passed over
    db = textual_inversion.embedding_db()
    db.load_textual_inversion_embeddings(force_reload=True)
    assert db.errors == {}
    assert "plain" not in db.word_embeddings and "renamed" not in db.word_embeddings
    loaded = db.usable_for(model)["pngemb-2"]
    assert loaded.filename == str(embeddings_dir / "renamed.png") and loaded.step == 2
    prompt = "a photo of pngemb-2"
    with_png = conditioning(model, {"pngemb-2": loaded}, prompt)
    assert torch.equal(with_png, conditioning(model, {"pngemb-2": textual_inversion.load_embedding_file(copy_file)}, prompt))
    assert not torch.equal(with_png, conditioning(model, {}, prompt))


def test_unticked_checkbox_saves_no_embedding_image(engine, dataset):
    model = model_of(SD1)
    textual_inversion.create_embedding("nopng", 1, False, model=model)
    train("nopng", dataset, steps=1, create_image_every=1, save_image_with_stored_embedding=False,
          preview_from_txt2img=True, preview_prompt="nopng", preview_steps=1, preview_width=64, preview_height=64,
          preview_sampler_name="Euler")
    folder = tit.log_folder("textual_inversion", "nopng")
    assert os.listdir(os.path.join(folder, "images")) == ["nopng-1.png"]
    assert not os.path.exists(os.path.join(folder, "image_embeddings"))


def test_loss_csv_rows_at_the_interval(engine, dataset, training_opts):
    model = model_of(SD1)
    textual_inversion.create_embedding("csvemb", 1, False, model=model)
    opts.set("training_write_csv_every", 2)
    losses = {}
    train("csvemb", dataset, steps=5, batch_size=2, callback=lambda step, loss: losses.__setitem__(step, loss))
    rows = read_csv(os.path.join(tit.log_folder("textual_inversion", "csvemb"), "textual_inversion_loss.csv"))
    assert rows[0] == CSV_HEADER
    assert [row[:3] for row in rows[1:]] == [["2", "0", "2"], ["4", "1", "2"]]  # 4 images, batches of 2: 2 steps an epoch
    assert [row[3] for row in rows[1:]] == [f"{losses[2]:.7f}", f"{losses[4]:.7f}"]
    assert [row[4] for row in rows[1:]] == ["0.05", "0.05"]
    opts.set("training_write_csv_every", 0)
    textual_inversion.create_embedding("nocsv", 1, False, model=model)
    train("nocsv", dataset, steps=2)
    assert not os.path.exists(os.path.join(tit.log_folder("textual_inversion", "nocsv"), "textual_inversion_loss.csv"))


def recording_optimizers(monkeypatch) -> tuple[list, list]:
    """(every AdamW made from now on, the state of each right after load_state_dict)."""
    made, loaded = [], []
    init, load = torch.optim.AdamW.__init__, torch.optim.AdamW.load_state_dict

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    def recording_load(self, state_dict):
        load(self, state_dict)
        loaded.append(copy.deepcopy(self.state_dict()))

    monkeypatch.setattr(torch.optim.AdamW, "__init__", recording_init)
    monkeypatch.setattr(torch.optim.AdamW, "load_state_dict", recording_load)
    return made, loaded


def assert_same_state(expected: dict, actual: dict) -> None:
    assert expected["state"].keys() == actual["state"].keys() and expected["state"]
    for index, entry in expected["state"].items():
        assert entry.keys() == actual["state"][index].keys()
        for key, value in entry.items():
            assert torch.equal(torch.as_tensor(value).cpu(), torch.as_tensor(actual["state"][index][key]).cpu()), key


def adam_steps(optimizer) -> float:
    return float(optimizer.state_dict()["state"][0]["step"])


def test_optimizer_state_saved_beside_each_file_and_loaded_on_resume(engine, dataset, training_opts, monkeypatch):
    model = model_of(SD1)
    filename = textual_inversion.create_embedding("opt", 1, False, model=model)
    opts.set("save_optimizer_state", True)
    made, loaded = recording_optimizers(monkeypatch)
    train("opt", dataset, steps=2, save_embedding_every=1)
    copies = os.path.join(tit.log_folder("textual_inversion", "opt"), "embeddings")
    assert sorted(os.listdir(copies)) == ["opt-1.pt", "opt-1.pt.optim", "opt-2.pt", "opt-2.pt.optim"]
    saved = torch.load(filename + ".optim", weights_only=True)
    assert saved["optimizer_name"] == "AdamW"
    assert saved["hash"] == textual_inversion.load_embedding_file(filename).checksum()
    assert saved["hash"] == torch.load(os.path.join(copies, "opt-2.pt.optim"), weights_only=True)["hash"]
    assert torch.load(os.path.join(copies, "opt-1.pt.optim"), weights_only=True)["hash"] != saved["hash"]
    assert_same_state(saved["optimizer_state_dict"], made[0].state_dict())
    assert adam_steps(made[0]) == 2

    _, _, message = train("opt", dataset, steps=3)
    assert f"Optimizer state loaded from {filename}.optim" in message
    assert len(loaded) == 1
    assert_same_state(saved["optimizer_state_dict"], loaded[0])
    assert adam_steps(made[1]) == 3  # continued from the saved state, not restarted

    # a changed embedding file no longer matches its .optim: a fresh optimizer, with a note
    textual_inversion.create_embedding("opt", 1, True, init_text="red", model=model)
    _, _, message = train("opt", dataset, steps=1)
    assert "belongs to another state of opt" in message and "starting a fresh optimizer" in message
    assert len(loaded) == 1 and adam_steps(made[2]) == 1


def test_optimizer_state_off_writes_and_reads_none(engine, dataset, training_opts):
    model = model_of(SD1)
    filename = textual_inversion.create_embedding("nooptim", 1, False, model=model)
    opts.set("save_optimizer_state", False)
    _, _, message = train("nooptim", dataset, steps=1)
    assert not os.path.exists(filename + ".optim") and "Optimizer" not in message


def test_hypernetwork_writes_its_csv_and_resumes_its_optimizer(engine, dataset, training_opts, monkeypatch):
    model_of(SD1)
    filename = hypernetworks.create_hypernetwork("hn extras", [64, 32], False)
    opts.set("save_optimizer_state", True)
    opts.set("training_write_csv_every", 1)
    made, loaded = recording_optimizers(monkeypatch)
    args = {"learn_rate": "0.001", "batch_size": 2, "data_root": str(dataset), "training_width": 64,
            "training_height": 64, "create_image_every": 0, "save_hypernetwork_every": 0,
            "template_filename": "hypernetwork.txt", "seed": 3}
    hypernetwork_training.train_hypernetwork("hn extras", steps=2, **args)
    saved = torch.load(filename + ".optim", weights_only=True)
    assert saved["hash"] == hypernetwork_training.file_shorthash(filename) and len(saved["hash"]) == 10
    assert_same_state(saved["optimizer_state_dict"], made[0].state_dict())
    _, _, message = hypernetwork_training.train_hypernetwork("hn extras", steps=3, **args)
    assert "Optimizer state loaded" in message
    assert_same_state(saved["optimizer_state_dict"], loaded[0])
    assert adam_steps(made[1]) == 3
    rows = read_csv(os.path.join(tit.log_folder("textual_inversion", "hn extras"), "hypernetwork_loss.csv"))
    assert rows[0] == CSV_HEADER  # the resumed run appends without a second header
    assert [row[:3] for row in rows[1:]] == [["1", "0", "1"], ["2", "0", "2"], ["3", "1", "1"]]


def test_train_tab_checkbox_has_a1111_id_and_reaches_training(engine, dataset, monkeypatch):
    with gr.Blocks() as demo:
        ui_train.create_ui()
    checkbox = next(block for block in demo.blocks.values()
                    if getattr(block, "elem_id", None) == "train_save_image_with_stored_embedding")
    assert isinstance(checkbox, gr.Checkbox) and checkbox.value is True
    assert checkbox.label == "Save images with embedding in PNG chunks"
    seen = {}

    def fake_train(name, **kwargs):
        seen.update(kwargs, name=name)
        return None, None, "done"

    monkeypatch.setattr(tit, "train_embedding", fake_train)
    fields = ["0.01", 1, 1, str(dataset), "textual_inversion", 64, 64, False, 2, "disabled", "0.1", False, 0.0, "once",
              False, 0, "subject.txt", False]
    assert ui_train.train_embedding("x", 0, False, *fields) == ("done", "")
    assert seen["save_image_with_stored_embedding"] is False and seen["learn_rate"] == "0.01" and seen["name"] == "x"
