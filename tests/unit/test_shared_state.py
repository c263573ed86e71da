"""Job state: interrupt/skip/stop flags, begin/end/nextjob bookkeeping, the /progress dict, live-preview cadence."""
import re
import threading

import pytest
from PIL import Image

from modules import shared_state
from modules.shared_options import opts
from modules.shared_state import State


@pytest.fixture
def preview_opts(monkeypatch):
    """Live-preview settings for one test, without touching the saved values of the process-wide store."""
    def set_opts(**values):
        for key, value in values.items():
            monkeypatch.setitem(opts.data, key, value)
    return set_opts


def test_live_instance():
    assert isinstance(shared_state.state, State)
    assert shared_state.state.server_start is not None


def test_begin_resets_everything():
    state = State()
    state.interrupt()
    state.skip()
    state.stop_generating()
    state.job_no = 5
    state.sampling_step = 7
    state.textinfo = "old"
    state.current_image = object()
    state.id_live_preview = 3
    state.begin(job="txt2img")
    assert (state.interrupted, state.skipped, state.stopping_generation) == (False, False, False)
    assert state.job == "txt2img"
    assert state.job_count == -1
    assert state.job_no == 0 and state.sampling_step == 0
    assert state.textinfo is None and state.current_image is None and state.id_live_preview == 0
    assert re.fullmatch(r"\d{14}", state.job_timestamp)
    assert state.time_start is not None
    assert State().job_timestamp == "0"


def test_flags():
    state = State()
    state.begin()
    assert state.job == "(unknown)"
    state.skip()
    assert state.skipped and not state.interrupted
    state.interrupt()
    assert state.interrupted
    state.stop_generating()
    assert state.stopping_generation


def test_nextjob_and_end():
    state = State()
    state.begin(job="img2img")
    state.job_count = 3
    state.sampling_step = 12
    state.current_image_sampling_step = 10
    state.nextjob()
    assert state.job_no == 1 and state.sampling_step == 0 and state.current_image_sampling_step == 0
    state.end()
    assert state.job == "" and state.job_count == 0
    State().end()  # ending without a beginning is harmless


def test_dict_is_the_progress_shape():
    state = State()
    state.begin(job="txt2img")
    state.job_count = 2
    state.sampling_steps = 20
    state.sampling_step = 4
    state.skip()
    assert state.dict() == {
        "skipped": True,
        "interrupted": False,
        "stopping_generation": False,
        "job": "txt2img",
        "job_count": 2,
        "job_timestamp": state.job_timestamp,
        "job_no": 0,
        "sampling_step": 4,
        "sampling_steps": 20,
    }


def test_nextjob_from_many_threads_counts_every_call():
    state = State()
    state.begin()

    def work():
        for _ in range(2000):
            state.nextjob()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state.job_no == 8000


def test_previews_every_n_steps(preview_opts):
    preview_opts(live_previews_enable=True, show_progress_every_n_steps=3)
    decoded = []
    state = State()
    state.preview_decoder = lambda latent: decoded.append(latent) or Image.new("RGB", (8, 8))
    state.begin()
    state.current_latent = "latent"
    for step in range(1, 8):
        state.sampling_step = step
        state.set_current_image()
    assert len(decoded) == 2  # at steps 3 and 6
    assert state.id_live_preview == 2
    assert state.current_image_sampling_step == 6
    assert state.current_image.size == (8, 8)


def test_previews_off_or_after_batch_only(preview_opts):
    state = State()
    state.preview_decoder = lambda latent: Image.new("RGB", (8, 8))
    state.begin()
    state.current_latent = "latent"
    state.sampling_step = 50
    preview_opts(live_previews_enable=False, show_progress_every_n_steps=1)
    state.set_current_image()
    state.nextjob()
    assert state.id_live_preview == 0
    preview_opts(live_previews_enable=True, show_progress_every_n_steps=-1)
    state.sampling_step = 50
    state.set_current_image()
    assert state.id_live_preview == 0  # -1: not during sampling...
    state.nextjob()
    assert state.id_live_preview == 1  # ...only when the batch is done


def test_no_decoder_or_failing_decoder_keeps_going(preview_opts):
    preview_opts(live_previews_enable=True, show_progress_every_n_steps=1)
    state = State()
    state.begin()
    state.current_latent = "latent"
    state.sampling_step = 1
    state.set_current_image()
    assert state.current_image is None

    def broken(latent):
        raise RuntimeError("decoder failed")

    state.preview_decoder = broken
    state.set_current_image()
    assert state.current_image is None and state.id_live_preview == 0


def test_assign_current_image_for_jpeg_previews(preview_opts):
    state = State()
    preview_opts(live_previews_image_format="jpeg")
    state.assign_current_image(Image.new("RGBA", (4, 4)))
    assert state.current_image.mode == "RGB" and state.id_live_preview == 1
    preview_opts(live_previews_image_format="png")
    state.assign_current_image(Image.new("RGBA", (4, 4)))
    assert state.current_image.mode == "RGBA" and state.id_live_preview == 2


def test_server_commands():
    state = State()
    assert state.wait_for_server_command(timeout=0.01) is None
    state.request_restart()
    assert state.interrupted
    assert state.wait_for_server_command(timeout=1) == "restart"
    assert state.wait_for_server_command(timeout=0.01) is None  # each command is delivered once
    threading.Timer(0.05, lambda: setattr(state, "server_command", "stop")).start()
    assert state.wait_for_server_command(timeout=5) == "stop"
