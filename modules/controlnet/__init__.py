"""ControlNet built in: models (models.py), units (units.py), preprocessors, and the residuals the denoiser adds (apply.py).

Engine code: no gradio or fastapi here; the UI and the API are the "ControlNet" always-on script and its routes.
"""
