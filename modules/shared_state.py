"""Progress of the running job, shared by the UI, the API and the sampling loop: A1111's `shared.state`.

The flags (interrupted, skipped, ...) are plain attributes that any thread may read; changes go through the
methods, which hold a lock so that a request arriving mid-change sees a whole state. Each running job has a State
(job_context says which); `state` is the facade that shows code running for a job its own.
"""
import datetime
import logging
import threading
import time

from modules.job_context import ContextFacade
from modules.shared_options import opts

log = logging.getLogger(__name__)


class State:
    skipped = False
    interrupted = False
    stopping_generation = False
    job = ""
    job_no = 0
    job_count = 0
    processing_has_refined_job_count = False
    job_timestamp = "0"
    sampling_step = 0
    sampling_steps = 0
    current_latent = None
    current_image = None
    current_image_sampling_step = 0
    id_live_preview = 0
    textinfo = None
    time_start = None
    server_start = None
    preview_decoder = None
    """latent batch -> PIL image for live previews; set by the sampling code (it knows the model and the preview method)."""

    def __init__(self):
        self._lock = threading.RLock()
        self._server_command = None
        self._server_command_signal = threading.Event()
        self.server_start = time.time()
        self._followers = []  # states of jobs running beside the one this state shows: they hear its requests too

    def add_follower(self, other: "State"):
        with self._lock:
            self._followers.append(other)

    def remove_follower(self, other: "State"):
        with self._lock:
            if other in self._followers:
                self._followers.remove(other)

    @property
    def server_command(self):
        return self._server_command

    @server_command.setter
    def server_command(self, value):
        """Ask the serving loop to "stop" or "restart"; it waits on wait_for_server_command()."""
        self._server_command = value
        self._server_command_signal.set()

    def wait_for_server_command(self, timeout=None):
        if self._server_command_signal.wait(timeout):
            self._server_command_signal.clear()
            return self._server_command
        return None

    def request_restart(self):
        self.interrupt()
        self.server_command = "restart"
        log.info("Received restart request")

    def skip(self):
        with self._lock:
            self.skipped = True
            followers = list(self._followers)
        for other in followers:
            other.skip()
        log.info("Received skip request")

    def interrupt(self):
        with self._lock:
            self.interrupted = True
            followers = list(self._followers)
        for other in followers:
            other.interrupt()
        log.info("Received interrupt request")

    def stop_generating(self):
        with self._lock:
            self.stopping_generation = True
            followers = list(self._followers)
        for other in followers:
            other.stop_generating()
        log.info("Received stop generating request")

    def nextjob(self):
        """The next image of the batch loop begins; a preview set to "after each batch" is taken now."""
        if opts.live_previews_enable and opts.show_progress_every_n_steps == -1:
            self.do_set_current_image()
        with self._lock:
            self.job_no += 1
            self.sampling_step = 0
            self.current_image_sampling_step = 0

    def dict(self):
        """The `state` object of /sdapi/v1/progress."""
        with self._lock:
            return {
                "skipped": self.skipped,
                "interrupted": self.interrupted,
                "stopping_generation": self.stopping_generation,
                "job": self.job,
                "job_count": self.job_count,
                "job_timestamp": self.job_timestamp,
                "job_no": self.job_no,
                "sampling_step": self.sampling_step,
                "sampling_steps": self.sampling_steps,
            }

    def begin(self, job: str = "(unknown)"):
        with self._lock:
            self.sampling_step = 0
            self.time_start = time.time()
            self.job_count = -1  # the processing code sets the real count once it knows n_iter
            self.processing_has_refined_job_count = False
            self.job_no = 0
            self.job_timestamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
            self.current_latent = None
            self.current_image = None
            self.current_image_sampling_step = 0
            self.id_live_preview = 0
            self.skipped = False
            self.interrupted = False
            self.stopping_generation = False
            self.textinfo = None
            self.job = job
        log.info("Starting job %s", job)

    def end(self):
        with self._lock:
            duration = time.time() - self.time_start if self.time_start is not None else 0.0
            log.info("Ending job %s (%.2f seconds)", self.job, duration)
            self.job = ""
            self.job_count = 0

    def set_current_image(self):
        """Called by the sampling loop after each step: decode a new live preview every `show_progress_every_n_steps` steps."""
        every = opts.show_progress_every_n_steps
        if opts.live_previews_enable and every > 0 and self.sampling_step - self.current_image_sampling_step >= every:
            self.do_set_current_image()

    def do_set_current_image(self):
        decoder = self.preview_decoder
        if self.current_latent is None or decoder is None:
            return
        try:
            image = decoder(self.current_latent)
        except Exception:
            log.exception("Could not decode the live preview")  # a failed preview must never stop the generation
            return
        self.assign_current_image(image)
        self.current_image_sampling_step = self.sampling_step

    def assign_current_image(self, image):
        if opts.live_previews_image_format == "jpeg" and image.mode == "RGBA":
            image = image.convert("RGB")  # JPEG has no alpha channel
        with self._lock:
            self.current_image = image
            self.id_live_preview += 1


process_state = State()  # what the UI and /sdapi/v1/progress read; interrupt requests arrive here
state = ContextFacade("state", process_state)  # A1111's name: a running job's state, else the process-wide one
