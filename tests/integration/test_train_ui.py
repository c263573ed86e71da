"""The Train tab: A1111's element ids, and its handlers creating and training through the engine."""
from __future__ import annotations

import gradio as gr
import pytest
import torch

from modules import call_queue, ui_train
from tests.integration.test_train_embedding import (
    SD1,
    model_of,
    start_training_engine,
    write_dataset,
)


@pytest.fixture()
def engine(monkeypatch, tiny_models_dir, tmp_path):
    return start_training_engine(monkeypatch, tiny_models_dir, tmp_path)


def element_ids(blocks: gr.Blocks) -> set[str]:
    return {block.elem_id for block in blocks.blocks.values() if getattr(block, "elem_id", None)}


def test_tab_has_a1111_element_ids(engine):
    with gr.Blocks() as demo:
        prompt = gr.Textbox()
        with gr.Tab("Train", id="train", elem_id="tab_train"):
            train_ui = ui_train.create_ui([prompt] * 8)
    ids = element_ids(demo)
    for elem_id in ("train_new_embedding_name", "train_initialization_text", "train_nvpt", "train_overwrite_old_embedding",
                    "train_create_embedding", "train_new_hypernetwork_name", "train_new_hypernetwork_sizes",
                    "train_new_hypernetwork_layer_structure", "train_new_hypernetwork_activation_func",
                    "train_new_hypernetwork_initialization_option", "train_new_hypernetwork_add_layer_norm",
                    "train_new_hypernetwork_use_dropout", "train_create_hypernetwork", "train_embedding",
                    "refresh_train_embedding_name", "train_hypernetwork", "refresh_train_hypernetwork_name",
                    "train_embedding_learn_rate", "train_hypernetwork_learn_rate", "train_batch_size",
                    "train_gradient_step", "train_dataset_directory", "train_log_directory", "train_template_file",
                    "refrsh_train_template_file", "train_training_width", "train_training_height", "train_varsize",
                    "train_steps", "train_create_image_every", "train_save_embedding_every", "use_weight",
                    "train_preview_from_txt2img", "train_shuffle_tags", "train_tag_drop_out",
                    "train_latent_sampling_method", "train_train_embedding", "train_interrupt_training",
                    "train_train_hypernetwork", "ti_output", "ti_error", "train_tabs"):
        assert elem_id in ids, elem_id
    assert train_ui.template_file.value == "style_filewords.txt"
    assert "hypernetwork.txt" in [choice[0] for choice in train_ui.template_file.choices]


def test_handlers_create_and_train_an_embedding(engine, tmp_path):
    model_of(SD1)
    update, text, _ = ui_train.create_embedding("ui emb", "cube", 2, False)
    assert update["value"] == "ui emb" and "ui emb" in update["choices"] and text.startswith("Created: ")
    fields = ["0.01", 1, 1, str(write_dataset(tmp_path / "data")), "textual_inversion", 64, 64, False, 2, "disabled",
              "0.1", False, 0.0, "once", False, 0, "subject.txt", False]
    job = call_queue.wrap_gradio_gpu_call(ui_train.train_embedding, extra_outputs=[""])
    message, outcome = job("ui emb", 0, True, *fields)
    assert "Training finished at 2 steps" in message and "Time taken" in outcome
    message, outcome = job("ui emb", 0, True, "0.01:x", *fields[1:])
    assert message == "" and "Invalid learning rate schedule" in outcome
    steps = torch.load(tmp_path / "embeddings" / "ui emb.pt", weights_only=True)["step"]
    assert steps == 2
    message, outcome = job("ui emb", 0, True, "0.01", *fields[1:16], "none.txt", False)
    assert "Every line of the prompt template none.txt must hold [name]" in outcome


def test_handler_creates_a_hypernetwork_and_maps_preview_fields(engine):
    update, text, _ = ui_train.create_hypernetwork("ui hn", ["64"], False, "1, 2, 1", "relu", "Normal", False, False,
                                                   "0, 0, 0")
    assert update["value"] == "ui hn" and update["choices"] == ["ui hn"] and text.endswith("ui hn.pt")
    args = ui_train.shared_train_args("1e-5", 2, 3, "d", "logs", 512, 640, True, 9, "norm", "0.5", True, 0.2, "random",
                                      True, 5, "style.txt", True, "p", "n", 12, "Euler", 6.5, 42, 320, 256)
    assert args == {"learn_rate": "1e-5", "batch_size": 2, "gradient_step": 3, "data_root": "d", "log_directory": "logs",
                    "training_width": 512, "training_height": 640, "varsize": True, "steps": 9, "clip_grad_mode": "norm",
                    "clip_grad_value": "0.5", "shuffle_tags": True, "tag_drop_out": 0.2,
                    "latent_sampling_method": "random", "use_weight": True, "create_image_every": 5,
                    "template_filename": "style.txt", "preview_from_txt2img": True, "preview_prompt": "p",
                    "preview_negative_prompt": "n", "preview_steps": 12, "preview_sampler_name": "Euler",
                    "preview_cfg_scale": 6.5, "preview_seed": 42, "preview_width": 320, "preview_height": 256}
