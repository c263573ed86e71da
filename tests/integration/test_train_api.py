"""/sdapi/v1/create/* and /sdapi/v1/train/* in A1111's shapes, served in-process on the tiny SD1 checkpoint."""
from __future__ import annotations

import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modules import call_queue
from modules.api.api import Api
from tests.integration.test_train_embedding import (
    SD1,
    model_of,
    start_training_engine,
    write_dataset,
)


@pytest.fixture()
def client(monkeypatch, tiny_models_dir, tmp_path):
    start_training_engine(monkeypatch, tiny_models_dir, tmp_path)
    model_of(SD1)
    app = FastAPI()
    Api(app, call_queue.queue_lock)
    return TestClient(app)


def test_create_and_train_an_embedding(client, tmp_path):
    created = client.post("/sdapi/v1/create/embedding", json={"name": "api emb", "num_vectors_per_token": 2,
                                                              "overwrite_old": False, "init_text": "cube"})
    assert created.status_code == 200
    assert created.json() == {"info": f"create embedding filename: {tmp_path / 'embeddings' / 'api emb.pt'}"}
    again = client.post("/sdapi/v1/create/embedding", json={"name": "api emb", "num_vectors_per_token": 1,
                                                            "overwrite_old": False})
    assert again.status_code == 422 and "api emb.pt already exists" in again.json()["detail"]
    body = {"id_task": "task(1)", "embedding_name": "api emb", "learn_rate": "0.01", "batch_size": 1,
            "data_root": str(write_dataset(tmp_path / "data")), "training_width": 64, "training_height": 64, "steps": 1,
            "create_image_every": 0, "save_embedding_every": 0, "template_filename": "subject.txt"}
    trained = client.post("/sdapi/v1/train/embedding", json=body)
    assert trained.status_code == 200, trained.text
    assert trained.json()["info"].startswith("train embedding complete: filename: ")
    assert "Training finished at 1 steps" in trained.json()["info"]
    assert torch.load(tmp_path / "embeddings" / "api emb.pt", weights_only=True)["step"] == 1
    bad = client.post("/sdapi/v1/train/embedding", json={**body, "learn_rate": "0.1:x"})
    assert bad.status_code == 422 and "Invalid learning rate schedule" in bad.json()["detail"]
    unknown = client.post("/sdapi/v1/train/embedding", json={**body, "learning_rate": 1})
    assert unknown.status_code == 422 and "Unknown fields: learning_rate" in unknown.json()["detail"]


def test_create_and_train_a_hypernetwork(client, tmp_path):
    created = client.post("/sdapi/v1/create/hypernetwork", json={"name": "api hn", "enable_sizes": [64],
                                                                 "overwrite_old": False, "activation_func": "relu"})
    assert created.status_code == 200 and created.json()["info"].endswith("api hn.pt")
    bad = client.post("/sdapi/v1/create/hypernetwork", json={"name": "x", "enable_sizes": [64], "overwrite_old": False,
                                                             "layer_structure": "2, 1"})
    assert bad.status_code == 422 and "must start and end with 1" in bad.json()["detail"]
    trained = client.post("/sdapi/v1/train/hypernetwork", json={
        "hypernetwork_name": "api hn", "learn_rate": "0.001", "data_root": str(write_dataset(tmp_path / "data")),
        "training_width": 64, "training_height": 64, "steps": 1, "create_image_every": 0,
        "save_hypernetwork_every": 0, "template_filename": "hypernetwork.txt"})
    assert trained.status_code == 200, trained.text
    assert "Training finished at 1 steps" in trained.json()["info"]
    assert torch.load(tmp_path / "hypernetworks" / "api hn.pt", weights_only=True)["step"] == 1
