"""The settings A1111 users know (keys, defaults, sections, labels as in A1111 v1.10) and the live store `opts`.

`opts` shows code running for a job that job's settings (job_context); engine code takes them from the job; extensions add options with
`options_templates.update(options_section(...))` or `opts.add_option(key, OptionInfo(...))`.
Choices that other modules know (checkpoints, VAEs, samplers...) are looked up when the settings page is built.
"""
from modules.job_context import ContextFacade
from modules.options import OptionHTML, OptionInfo, Options, categories, options_section
from modules.shared_cmd_options import cmd_opts

categories.register_category("saving", "Saving images")
categories.register_category("sd", "Stable Diffusion")
categories.register_category("ui", "User Interface")
categories.register_category("system", "System")
categories.register_category("postprocessing", "Postprocessing")
categories.register_category("training", "Training")

restricted_opts = {
    "samples_filename_pattern",
    "directories_filename_pattern",
    "outdir_samples",
    "outdir_txt2img_samples",
    "outdir_img2img_samples",
    "outdir_extras_samples",
    "outdir_grids",
    "outdir_txt2img_grids",
    "outdir_img2img_grids",
    "outdir_save",
    "outdir_init_images",
    "temp_dir",
    "clean_temp_dir_at_start",
}


def dir_field_args():
    """Directory and file-name options are hidden with --hide-ui-dir-config (and refused: see restricted_opts)."""
    return {"visible": not cmd_opts.hide_ui_dir_config}


def checkpoint_choices():
    from modules import sd_models
    return {"choices": sd_models.checkpoint_registry.titles()}


def refresh_checkpoints():
    from modules import sd_models
    sd_models.list_models(cmd_opts)


def image_format_choices():
    """The image file types people save generations as, those this Pillow can write."""
    from PIL import Image
    Image.init()
    writable = {ext.lstrip(".") for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}
    return {"choices": [ext for ext in ("png", "jpg", "jpeg", "webp", "avif", "gif", "bmp", "tif", "tiff") if ext in writable]}


def image_upscaler_choices():
    from modules import processing
    return {"choices": processing.image_upscaler_names()}


def vae_choices():
    from modules import shared_items
    return {"choices": shared_items.sd_vae_items()}


def additional_module_choices():
    from modules import paths_internal
    from modules.model_families import flux_loader
    return {"choices": [path.name for path in flux_loader.module_files(paths_internal.models_path)], "multiselect": True}


def refresh_vae_list():
    from modules import sd_vae
    sd_vae.refresh_vae_list(cmd_opts)


def sampler_choices():
    from modules import sd_samplers
    return {"choices": [sampler.name for sampler in sd_samplers.all_samplers]}


def localization_choices():
    from modules import localization
    localization.list_localizations(cmd_opts.localizations_dir)  # extensions installed since the start count too
    return {"choices": ["None", *sorted(localization.localizations)]}


def interrogate_category_choices():
    from modules import interrogate
    return {"choices": interrogate.category_types()}


GRADIO_THEMES = ["Default", "Base", "Citrus", "Glass", "Monochrome", "Ocean", "Origin", "Soft"]  # Gradio's own, offline

# the page's main tab labels, filled while the page is built (A1111's shared.tab_names)
tab_names: list[str] = []


def tab_choices():
    return {"choices": list(tab_names), "multiselect": True}


def setting_choices():
    return {"choices": list(opts.data_labels), "multiselect": True}


def infotext_choices():
    return {"choices": sorted({info.infotext for info in opts.data_labels.values() if info.infotext}), "multiselect": True}


options_templates: dict[str, OptionInfo] = {}

options_templates.update(options_section(("saving-images", "Saving images/grids", "saving"), {
    "samples_save": OptionInfo(True, "Always save all generated images"),
    "samples_format": OptionInfo("png", "File format for images", "Dropdown", image_format_choices),
    "samples_filename_pattern": OptionInfo("", "Images filename pattern", component_args=dir_field_args).link("wiki", "https://github.com/AUTOMATIC1111/stable-diffusion-webui/wiki/Custom-Images-Filename-Name-and-Subdirectory").written_under_data_dir(),
    "save_images_add_number": OptionInfo(True, "Add number to filename when saving", component_args=dir_field_args),
    "save_images_replace_action": OptionInfo("Replace", "Saving the image to an existing file", "Radio", {"choices": ["Replace", "Add number suffix"]}),
    "grid_save": OptionInfo(True, "Always save all generated image grids"),
    "grid_format": OptionInfo("png", "File format for grids", "Dropdown", image_format_choices),
    "grid_extended_filename": OptionInfo(False, "Add extended info (seed, prompt) to filename when saving grid"),
    "grid_only_if_multiple": OptionInfo(True, "Do not save grids consisting of one picture"),
    "grid_prevent_empty_spots": OptionInfo(False, "Prevent empty spots in grid (when set to autodetect)"),
    "grid_zip_filename_pattern": OptionInfo("", "Archive filename pattern", component_args=dir_field_args),
    "n_rows": OptionInfo(-1, "Grid row count; use -1 for autodetect and 0 for it to be same as batch size", "Slider", {"minimum": -1, "maximum": 16, "step": 1}),
    "font": OptionInfo("", "Font for image grids that have text"),
    "grid_text_active_color": OptionInfo("#000000", "Text color for image grids", "ColorPicker"),
    "grid_text_inactive_color": OptionInfo("#999999", "Inactive text color for image grids", "ColorPicker"),
    "grid_background_color": OptionInfo("#ffffff", "Background color for image grids", "ColorPicker"),
    "jpeg_quality": OptionInfo(80, "Quality for saved jpeg and avif images", "Slider", {"minimum": 1, "maximum": 100, "step": 1}),
    "webp_lossless": OptionInfo(False, "Use lossless compression for webp images"),
    "export_for_4chan": OptionInfo(True, "Save copy of large images as JPG").info("if the file size is above the limit, or either width or height are above the limit"),
    "img_downscale_threshold": OptionInfo(4.0, "File size limit for the above option, MB", "Number"),
    "target_side_length": OptionInfo(4000, "Width/height limit for the above option, in pixels", "Number"),
    "img_max_size_mp": OptionInfo(200, "Maximum image size", "Number").info("in megapixels"),
    "use_original_name_batch": OptionInfo(True, "Use original name for output filename during batch process in extras tab"),
    "use_upscaler_name_as_suffix": OptionInfo(False, "Use upscaler name as filename suffix in the extras tab"),
    "save_selected_only": OptionInfo(True, "When using 'Save' button, only save a single selected image"),
    "save_write_log_csv": OptionInfo(True, "Write log.csv when saving images using 'Save' button"),
    "temp_dir": OptionInfo("", "Directory for temporary images; leave empty for default", component_args=dir_field_args),
    "clean_temp_dir_at_start": OptionInfo(False, "Cleanup non-default temporary directory when starting webui", component_args=dir_field_args),
}))

options_templates.update(options_section(("saving-paths", "Paths for saving", "saving"), {
    "outdir_samples": OptionInfo("", "Output directory for images; if empty, defaults to three directories below", component_args=dir_field_args).written_under_data_dir(),
    "outdir_txt2img_samples": OptionInfo("outputs/txt2img-images", "Output directory for txt2img images", component_args=dir_field_args).written_under_data_dir(),
    "outdir_img2img_samples": OptionInfo("outputs/img2img-images", "Output directory for img2img images", component_args=dir_field_args).written_under_data_dir(),
    "outdir_extras_samples": OptionInfo("outputs/extras-images", "Output directory for images from extras tab", component_args=dir_field_args).written_under_data_dir(),
    "outdir_grids": OptionInfo("", "Output directory for grids; if empty, defaults to two directories below", component_args=dir_field_args).written_under_data_dir(),
    "outdir_txt2img_grids": OptionInfo("outputs/txt2img-grids", "Output directory for txt2img grids", component_args=dir_field_args).written_under_data_dir(),
    "outdir_img2img_grids": OptionInfo("outputs/img2img-grids", "Output directory for img2img grids", component_args=dir_field_args).written_under_data_dir(),
    "outdir_save": OptionInfo("log/images", "Directory for saving images using the Save button", component_args=dir_field_args).written_under_data_dir(),
    "outdir_init_images": OptionInfo("outputs/init-images", "Directory for saving init images when using img2img", component_args=dir_field_args).written_under_data_dir(),
}))

options_templates.update(options_section(("saving-to-dirs", "Saving to a directory", "saving"), {
    "save_to_dirs": OptionInfo(True, "Save images to a subdirectory"),
    "grid_save_to_dirs": OptionInfo(True, "Save grids to a subdirectory"),
    "use_save_to_dirs_for_ui": OptionInfo(False, "When using \"Save\" button, save images to a subdirectory"),
    "directories_filename_pattern": OptionInfo("[date]", "Directory name pattern", component_args=dir_field_args).link("wiki", "https://github.com/AUTOMATIC1111/stable-diffusion-webui/wiki/Custom-Images-Filename-Name-and-Subdirectory").written_under_data_dir(),
    "directories_max_prompt_words": OptionInfo(8, "Max prompt words for [prompt_words] pattern", "Slider", lambda: {"minimum": 1, "maximum": 20, "step": 1, **dir_field_args()}),
}))

options_templates.update(options_section(("upscaling", "Upscaling", "postprocessing"), {
    "ESRGAN_tile": OptionInfo(192, "Tile size for ESRGAN upscalers.", "Slider", {"minimum": 0, "maximum": 512, "step": 16}).info("0 = no tiling"),
    "ESRGAN_tile_overlap": OptionInfo(8, "Tile overlap for ESRGAN upscalers.", "Slider", {"minimum": 0, "maximum": 48, "step": 1}).info("Low values = visible seam"),
    "set_scale_by_when_changing_upscaler": OptionInfo(False, "Automatically set the Scale by factor based on the name of the selected Upscaler."),
    "upscale_button_upscaler": OptionInfo("Lanczos", "Upscaler of the ✨ button under the gallery", "Dropdown", image_upscaler_choices),
    "upscale_button_scale": OptionInfo(2.0, "Scale of the ✨ button under the gallery", "Slider", {"minimum": 1.0, "maximum": 4.0, "step": 0.05}),
}))

options_templates.update(options_section(("face-restoration", "Face restoration", "postprocessing"), {
    "face_restoration": OptionInfo(False, "Restore faces", infotext="Face restoration").info("will use a third-party model on generation result to reconstruct faces"),
    "face_restoration_model": OptionInfo("CodeFormer", "Face restoration model", "Radio", {"choices": ["CodeFormer", "GFPGAN"]}),
    "code_former_weight": OptionInfo(0.5, "CodeFormer weight", "Slider", {"minimum": 0, "maximum": 1, "step": 0.01}).info("0 = maximum effect; 1 = minimum effect"),
}))

options_templates.update(options_section(("system", "System", "system"), {
    "multiple_tqdm": OptionInfo(True, "Add a second progress bar to the console that shows progress for an entire job."),
    "list_hidden_files": OptionInfo(True, "Load models/files in hidden directories").info("directory is hidden if its name starts with \".\""),
}))

options_templates.update(options_section(("API", "API", "system"), {
    "api_enable_requests": OptionInfo(True, "Allow http:// and https:// URLs for input images in API", restrict_api=True),
    "api_forbid_local_requests": OptionInfo(True, "Forbid URLs to local resources", restrict_api=True),
    "api_useragent": OptionInfo("", "User agent for requests", restrict_api=True),
    "job_batch_window_ms": OptionInfo(200, "Batching: how long a queued API job waits for compatible jobs to share its sampling batch", "Number").info("milliseconds; 0 = run each job alone"),
    "job_batch_max_images": OptionInfo(4, "Batching: most images in one batch of queued API jobs", "Number"),
}))

options_templates.update(options_section(("training", "Training", "training"), {
    "save_optimizer_state": OptionInfo(False, "Saves Optimizer state as separate *.optim file. Training of embedding or HN can be resumed with the matching optim file."),
    "training_write_csv_every": OptionInfo(500, "Save an csv containing the loss to log directory every N steps, 0 to disable"),
}))

options_templates.update(options_section(("interrogate", "Interrogate", "training"), {
    "interrogate_keep_models_in_memory": OptionInfo(False, "Keep models in VRAM"),
    "interrogate_return_ranks": OptionInfo(False, "Include ranks of model tags matches in results.").info("booru only"),
    "interrogate_clip_num_beams": OptionInfo(1, "BLIP: num_beams", "Slider", {"minimum": 1, "maximum": 16, "step": 1}),
    "interrogate_clip_min_length": OptionInfo(24, "BLIP: minimum description length", "Slider", {"minimum": 1, "maximum": 128, "step": 1}),
    "interrogate_clip_max_length": OptionInfo(48, "BLIP: maximum description length", "Slider", {"minimum": 1, "maximum": 256, "step": 1}),
    "interrogate_clip_dict_limit": OptionInfo(1500, "CLIP: maximum number of lines in text file").info("0 = No limit"),
    "interrogate_clip_skip_categories": OptionInfo([], "CLIP: skip inquire categories", "CheckboxGroup", interrogate_category_choices),
    "interrogate_deepbooru_score_threshold": OptionInfo(0.5, "deepbooru: score threshold", "Slider", {"minimum": 0, "maximum": 1, "step": 0.01}),
    "deepbooru_sort_alpha": OptionInfo(True, "deepbooru: sort tags alphabetically").info("if not: sort by score"),
    "deepbooru_use_spaces": OptionInfo(True, "deepbooru: use spaces in tags").info("if not: use underscores"),
    "deepbooru_escape": OptionInfo(True, "deepbooru: escape (\\) brackets").info("so they are used as literal brackets and not for emphasis"),
    "deepbooru_filter_tags": OptionInfo("", "deepbooru: filter out those tags").info("separate by comma"),
}))

options_templates.update(options_section(("sd", "Stable Diffusion", "sd"), {
    "sd_model_checkpoint": OptionInfo(None, "Stable Diffusion checkpoint", "Dropdown", checkpoint_choices, refresh=refresh_checkpoints, infotext="Model hash"),
    "sd_checkpoints_limit": OptionInfo(1, "Maximum number of checkpoints loaded at the same time", "Slider", {"minimum": 1, "maximum": 10, "step": 1}),
    "emphasis": OptionInfo("Original", "Emphasis mode", "Radio", {"choices": ["None", "Ignore", "Original", "No norm"]}, infotext="Emphasis").info("makes it possible to make model to pay (more:1.1) or (less:0.9) attention to text when you use the syntax in prompt"),
    "comma_padding_backtrack": OptionInfo(20, "Prompt word wrap length limit", "Slider", {"minimum": 0, "maximum": 74, "step": 1}).info("in tokens - for texts shorter than specified, if they don't fit into 75 token limit, move them to the next 75 token chunk"),
    "CLIP_stop_at_last_layers": OptionInfo(1, "Clip skip", "Slider", {"minimum": 1, "maximum": 12, "step": 1}, infotext="Clip skip").link("wiki", "https://github.com/AUTOMATIC1111/stable-diffusion-webui/wiki/Features#clip-skip").info("ignore last layers of CLIP network; 1 ignores none, 2 ignores one layer"),
    "randn_source": OptionInfo("GPU", "Random number generator source.", "Radio", {"choices": ["GPU", "CPU", "NV"]}, infotext="RNG").info("changes seeds drastically; use CPU to produce the same picture across different videocard vendors; use NV to produce same picture as on NVidia videocards"),
    "tiling": OptionInfo(False, "Tiling", infotext="Tiling").info("produce a tileable picture"),
    "hires_fix_refiner_pass": OptionInfo("second pass", "Hires fix: which pass to enable refiner for", "Radio", {"choices": ["first pass", "second pass", "both passes"]}, infotext="Hires refiner"),
}))

options_templates.update(options_section(("sdxl", "Stable Diffusion XL", "sd"), {
    "sdxl_crop_top": OptionInfo(0, "crop top coordinate"),
    "sdxl_crop_left": OptionInfo(0, "crop left coordinate"),
    "sdxl_refiner_low_aesthetic_score": OptionInfo(2.5, "SDXL low aesthetic score", "Number").info("used for refiner model negative prompt"),
    "sdxl_refiner_high_aesthetic_score": OptionInfo(6.0, "SDXL high aesthetic score", "Number").info("used for refiner model prompt"),
}))

options_templates.update(options_section(("vae", "VAE", "sd"), {
    "sd_vae_explanation": OptionHTML("""
<abbr title='Variational autoencoder'>VAE</abbr> is a neural network that transforms a standard <abbr title='red/green/blue'>RGB</abbr>
image into latent space representation and back. Latent space representation is what stable diffusion is working on during sampling
(i.e. when the progress bar is between empty and full). For txt2img, VAE is used to create a resulting image after the sampling is finished.
For img2img, VAE is used to process user's input image before the sampling, and to create an image after sampling.
"""),
    "sd_vae": OptionInfo("Automatic", "SD VAE", "Dropdown", vae_choices, refresh=refresh_vae_list, infotext="VAE").info("choose VAE model: Automatic = use one with same filename as checkpoint; None = use VAE from checkpoint"),
    "forge_additional_modules": OptionInfo([], "VAE / Text Encoder", "Dropdown", additional_module_choices).info("Forge's: the separate parts (VAE, CLIP-L, T5) a Flux checkpoint without them uses; none chosen: the first file of each kind in models/VAE and models/text_encoder"),
    "sd_vae_overrides_per_model_preferences": OptionInfo(True, "Selected VAE overrides per-model preferences").info("you can set per-model VAE either by editing user metadata for checkpoints, or by making the VAE have same name as checkpoint"),
    "auto_vae_precision": OptionInfo(True, "Automatically revert VAE to 32-bit floats").info("triggers when a tensor with NaNs is produced in VAE; disabling the option in this case will result in a black square image"),
    "sd_vae_encode_method": OptionInfo("Full", "VAE type for encode", "Radio", {"choices": ["Full", "TAESD"]}, infotext="VAE Encoder").info("method to encode image to latent (use in img2img, hires-fix or inpaint mask)"),
    "sd_vae_decode_method": OptionInfo("Full", "VAE type for decode", "Radio", {"choices": ["Full", "TAESD"]}, infotext="VAE Decoder").info("method to decode latent to image"),
}))

options_templates.update(options_section(("img2img", "img2img", "sd"), {
    "initial_noise_multiplier": OptionInfo(1.0, "Noise multiplier for img2img", "Slider", {"minimum": 0.0, "maximum": 1.5, "step": 0.001}, infotext="Noise multiplier"),
    "img2img_extra_noise": OptionInfo(0.0, "Extra noise multiplier for img2img and hires fix", "Slider", {"minimum": 0.0, "maximum": 1.0, "step": 0.01}, infotext="Extra noise").info("0 = disabled (default); should be lower than denoising strength"),
    "img2img_background_color": OptionInfo("#ffffff", "With img2img, fill transparent parts of the input image with this color.", "ColorPicker"),
}))

options_templates.update(options_section(("optimizations", "Optimizations", "sd"), {
    "batch_cond_uncond": OptionInfo(True, "Batch cond/uncond").info("do both conditional and unconditional denoising in one batch; uses a bit more VRAM during sampling, but improves speed"),
}))

options_templates.update(options_section(("compatibility", "Compatibility", "sd"), {
    "auto_backcompat": OptionInfo(True, "Automatic backward compatibility").info("automatically enable options for backwards compatibility when importing generation parameters from infotext that has program version."),
    "use_old_karras_scheduler_sigmas": OptionInfo(False, "Use old karras scheduler sigmas (0.1 to 10)."),
    "use_old_hires_fix_width_height": OptionInfo(False, "For hires fix, use width/height sliders to set final resolution rather than first pass (disables Upscale by, Resize width/height to)."),
    "use_old_scheduling": OptionInfo(False, "Use old prompt editing timelines.", infotext="Old prompt editing timelines").info("For [red:green:N]; old: If N < 1, it's a fraction of steps (and hires fix uses range from 0 to 1), if N >= 1, it's an absolute number of steps; new: If N has a decimal point in it, it's a fraction of steps (and hires fix uses range from 1 to 2), otherwise it's an absolute number of steps"),
    "refiner_switch_by_sample_steps": OptionInfo(False, "Switch to refiner by sampling steps instead of model timesteps. Old behavior for refiner.", infotext="Refiner switch by sampling steps"),
}))

options_templates.update(options_section(("extra_networks", "Extra Networks", "sd"), {
    "extra_networks_default_multiplier": OptionInfo(1.0, "Default multiplier for extra networks", "Slider", {"minimum": 0.0, "maximum": 2.0, "step": 0.01}),
    "extra_networks_add_text_separator": OptionInfo(" ", "Extra networks separator").info("extra text to add before <...> when adding extra network to prompt"),
    "textual_inversion_add_hashes_to_infotext": OptionInfo(True, "Add Textual Inversion hashes to infotext"),
    "lora_show_all": OptionInfo(False, "Always show all networks on the Lora page").info("otherwise, those detected as for incompatible version of Stable Diffusion will be hidden"),
}))

options_templates.update(options_section(("ui_prompt_editing", "Prompt editing", "ui"), {
    "keyedit_precision_attention": OptionInfo(0.1, "Precision for (attention:1.1) when editing the prompt with Ctrl+up/down", "Slider", {"minimum": 0.01, "maximum": 0.2, "step": 0.001}),
    "keyedit_precision_extra": OptionInfo(0.05, "Precision for <extra networks:0.9> when editing the prompt with Ctrl+up/down", "Slider", {"minimum": 0.01, "maximum": 0.2, "step": 0.001}),
    "keyedit_delimiters": OptionInfo(r".,\/!?%^*;:{}=`~() ", "Word delimiters when editing the prompt with Ctrl+up/down"),
    "keyedit_delimiters_whitespace": OptionInfo(["Tab", "Carriage Return", "Line Feed"], "Ctrl+up/down whitespace delimiters", "CheckboxGroup", {"choices": ["Tab", "Carriage Return", "Line Feed"]}),
    "keyedit_move": OptionInfo(True, "Alt+left/right moves prompt elements"),
    "disable_token_counters": OptionInfo(False, "Disable prompt token counters"),
    "include_styles_into_token_counters": OptionInfo(True, "Count tokens of enabled styles").info("When calculating how many tokens the prompt has, also consider tokens added by enabled styles."),
    "enable_prompt_comments": OptionInfo(True, "Enable comments").info("Use # anywhere in the prompt to hide the text between # and the end of the line from the generation."),
}))

options_templates.update(options_section(("ui_gallery", "Gallery", "ui"), {
    "return_grid": OptionInfo(True, "Show grid in gallery"),
    "do_not_show_images": OptionInfo(False, "Do not show any images in gallery"),
    "js_modal_lightbox": OptionInfo(True, "Full page image viewer: enable"),
    "js_modal_lightbox_initially_zoomed": OptionInfo(True, "Full page image viewer: show images zoomed in by default"),
    "gallery_height": OptionInfo("", "Gallery height").info("can be any valid CSS value, for example 768px or 20em").needs_reload_ui(),
}))

options_templates.update(options_section(("ui_alternatives", "UI alternatives", "ui"), {
    "compact_prompt_box": OptionInfo(False, "Compact prompt layout").info("puts prompt and negative prompt inside the Generate tab, leaving more vertical space for the image on the right").needs_reload_ui(),
    "samplers_in_dropdown": OptionInfo(True, "Use dropdown for sampler selection instead of radio group").needs_reload_ui(),
    "dimensions_and_batch_together": OptionInfo(True, "Show Width/Height and Batch sliders in same row").needs_reload_ui(),
    "hires_fix_show_sampler": OptionInfo(False, "Hires fix: show hires checkpoint and sampler selection").needs_reload_ui(),
    "hires_fix_show_prompts": OptionInfo(False, "Hires fix: show hires prompt and negative prompt").needs_reload_ui(),
    "interrupt_after_current": OptionInfo(True, "Don't Interrupt in the middle").info("when using Interrupt button, if generating more than one image, stop after the generation of an image has finished, instead of immediately"),
}))

options_templates.update(options_section(("ui", "User interface", "ui"), {
    "localization": OptionInfo("None", "Localization", "Dropdown", localization_choices).needs_reload_ui(),
    "gradio_theme": OptionInfo("Default", "Gradio theme", "Dropdown", {"choices": GRADIO_THEMES}).needs_reload_ui(),
    "hidden_tabs": OptionInfo([], "Hidden UI tabs", "Dropdown", tab_choices),
    "ui_tab_order": OptionInfo([], "UI tab order", "Dropdown", tab_choices).info("these tabs first, in this order; the others after them"),
    "show_progress_in_title": OptionInfo(True, "Show generation progress in window title."),
    "notification_browser": OptionInfo(True, "Browser notification when a job finishes").info("while the page is not in front; the browser asks for permission at the first Generate"),
    "notification_audio": OptionInfo(True, "Play notification sound after image generation").info("notification.mp3 should be present in the root directory").needs_reload_ui(),
    "notification_volume": OptionInfo(100, "Notification sound volume", "Slider", {"minimum": 0, "maximum": 100, "step": 1}).info("in %"),
    "send_seed": OptionInfo(True, "Send seed when sending prompt or image to other interface"),
    "send_size": OptionInfo(True, "Send size when sending prompt or image to another interface"),
}))

options_templates.update(options_section(("infotext", "Infotext", "ui"), {
    "enable_pnginfo": OptionInfo(True, "Write infotext to metadata of the generated image"),
    "save_txt": OptionInfo(False, "Create a text file with infotext next to every generated image"),
    "add_model_name_to_info": OptionInfo(True, "Add model name to infotext"),
    "add_model_hash_to_info": OptionInfo(True, "Add model hash to infotext"),
    "add_vae_name_to_info": OptionInfo(True, "Add VAE name to infotext"),
    "add_vae_hash_to_info": OptionInfo(True, "Add VAE hash to infotext"),
    "add_version_to_infotext": OptionInfo(True, "Add program version to infotext"),
    "disable_weights_auto_swap": OptionInfo(True, "Disregard checkpoint information from pasted infotext").info("when reading generation parameters from text into UI"),
    "infotext_skip_pasting": OptionInfo([], "Disregard fields from pasted infotext", "Dropdown", infotext_choices),
    "infotext_styles": OptionInfo("Apply if any", "Infer styles from prompts of pasted infotext", "Radio", {"choices": ["Ignore", "Apply", "Discard", "Apply if any"]}).info("when reading generation parameters from text into UI)"),
}))

options_templates.update(options_section(("ui", "Live previews", "ui"), {
    "show_progressbar": OptionInfo(True, "Show progressbar"),
    "live_previews_enable": OptionInfo(True, "Show live previews of the created image"),
    "live_previews_image_format": OptionInfo("png", "Live preview file format", "Radio", {"choices": ["jpeg", "png", "webp"]}),
    "show_progress_grid": OptionInfo(True, "Show previews of all images generated in a batch as a grid"),
    "show_progress_every_n_steps": OptionInfo(10, "Live preview display period", "Slider", {"minimum": -1, "maximum": 32, "step": 1}).info("in sampling steps - show new live preview image every N sampling steps; -1 = only show after completion of batch"),
    "show_progress_type": OptionInfo("Approx NN", "Live preview method", "Radio", {"choices": ["Full", "Approx NN", "Approx cheap", "TAESD"]}).info("Full = slow but pretty; Approx NN and TAESD = fast but low quality; Approx cheap = super fast but terrible otherwise"),
    "live_preview_allow_lowvram_full": OptionInfo(False, "Allow Full live preview method with lowvram/medvram").info("If not, Approx NN will be used instead; Full live preview method is very detrimental to speed if lowvram/medvram optimizations are enabled"),
    "live_preview_refresh_period": OptionInfo(1000, "Progressbar and preview update period").info("in milliseconds"),
    "prevent_screen_sleep_during_generation": OptionInfo(True, "Prevent screen sleep during generation"),
}))

options_templates.update(options_section(("sampler-params", "Sampler parameters", "sd"), {
    "hide_samplers": OptionInfo([], "Hide samplers in user interface", "CheckboxGroup", sampler_choices).needs_reload_ui(),
    "eta_ddim": OptionInfo(0.0, "Eta for DDIM", "Slider", {"minimum": 0.0, "maximum": 1.0, "step": 0.01}, infotext="Eta DDIM").info("noise multiplier; higher = more unpredictable results"),
    "eta_ancestral": OptionInfo(1.0, "Eta for k-diffusion samplers", "Slider", {"minimum": 0.0, "maximum": 1.0, "step": 0.01}, infotext="Eta").info("noise multiplier; currently only applies to ancestral samplers (i.e. Euler a) and SDE samplers"),
    "s_churn": OptionInfo(0.0, "sigma churn", "Slider", {"minimum": 0.0, "maximum": 100.0, "step": 0.01}, infotext="Sigma churn").info("amount of stochasticity; only applies to Euler, Heun, and DPM2"),
    "s_tmin": OptionInfo(0.0, "sigma tmin", "Slider", {"minimum": 0.0, "maximum": 10.0, "step": 0.01}, infotext="Sigma tmin").info("enable stochasticity; start value of the sigma range; only applies to Euler, Heun, and DPM2"),
    "s_tmax": OptionInfo(0.0, "sigma tmax", "Slider", {"minimum": 0.0, "maximum": 999.0, "step": 0.01}, infotext="Sigma tmax").info("0 = inf; end value of the sigma range; only applies to Euler, Heun, and DPM2"),
    "s_noise": OptionInfo(1.0, "sigma noise", "Slider", {"minimum": 0.0, "maximum": 1.1, "step": 0.001}, infotext="Sigma noise").info("amount of additional noise to counteract loss of detail during sampling"),
    "sigma_min": OptionInfo(0.0, "sigma min", "Number", infotext="Schedule min sigma").info("0 = default (~0.03); minimum noise strength for k-diffusion noise scheduler"),
    "sigma_max": OptionInfo(0.0, "sigma max", "Number", infotext="Schedule max sigma").info("0 = default (~14.6); maximum noise strength for k-diffusion noise scheduler"),
    "rho": OptionInfo(0.0, "rho", "Number", infotext="Schedule rho").info("0 = default (7 for karras, 1 for polyexponential); higher values result in a steeper noise schedule (decreases faster)"),
    "eta_noise_seed_delta": OptionInfo(0, "Eta noise seed delta", "Number", {"precision": 0}, infotext="ENSD").info("ENSD; does not improve anything, just produces different results for ancestral samplers - only useful for reproducing images"),
    "always_discard_next_to_last_sigma": OptionInfo(False, "Always discard next-to-last sigma", infotext="Discard penultimate sigma"),
    "uni_pc_variant": OptionInfo("bh1", "UniPC variant", "Radio", {"choices": ["bh1", "bh2", "vary_coeff"]}, infotext="UniPC variant"),
    "uni_pc_skip_type": OptionInfo("time_uniform", "UniPC skip type", "Radio", {"choices": ["time_uniform", "time_quadratic", "logSNR"]}, infotext="UniPC skip type"),
    "uni_pc_order": OptionInfo(3, "UniPC order", "Slider", {"minimum": 1, "maximum": 50, "step": 1}, infotext="UniPC order").info("must be < sampling steps"),
    "uni_pc_lower_order_final": OptionInfo(True, "UniPC lower order final", infotext="UniPC lower order final"),
    "beta_dist_alpha": OptionInfo(0.6, "Beta scheduler - alpha", "Slider", {"minimum": 0.01, "maximum": 1.0, "step": 0.01}, infotext="Beta scheduler alpha").info("Default = 0.6; the alpha parameter of the beta distribution used in Beta sampling"),
    "beta_dist_beta": OptionInfo(0.6, "Beta scheduler - beta", "Slider", {"minimum": 0.01, "maximum": 1.0, "step": 0.01}, infotext="Beta scheduler beta").info("Default = 0.6; the beta parameter of the beta distribution used in Beta sampling"),
}))

options_templates.update(options_section(("postprocessing", "Postprocessing", "postprocessing"), {
    "postprocessing_operation_order": OptionInfo([], "Postprocessing operation order", "Dropdown", {"choices": [], "multiselect": True}).needs_reload_ui(),
    "upscaling_max_images_in_cache": OptionInfo(5, "Maximum number of images in upscaling cache", "Slider", {"minimum": 0, "maximum": 10, "step": 1}),
}))

options_templates.update(options_section(("settings_in_ui", "Settings in UI", "ui"), {
    "settings_in_ui": OptionHTML("This page allows you to add some settings to the main interface of txt2img and img2img tabs."),
    "quicksettings_list": OptionInfo(["sd_model_checkpoint", "sd_vae", "forge_additional_modules", "CLIP_stop_at_last_layers"], "Quicksettings list", "Dropdown", setting_choices).info("setting entries that appear at the top of page rather than in settings tab").needs_reload_ui(),
    "extra_options_txt2img": OptionInfo([], "Settings for txt2img", "Dropdown", setting_choices).info("setting entries that also appear in txt2img interfaces").needs_reload_ui(),
    "extra_options_img2img": OptionInfo([], "Settings for img2img", "Dropdown", setting_choices).info("setting entries that also appear in img2img interfaces").needs_reload_ui(),
}))

options_templates.update(options_section(("control_net", "ControlNet", "sd"), {
    "control_net_unit_count": OptionInfo(3, "Multi-ControlNet: ControlNet unit number (requires restart)", "Slider", {"minimum": 1, "maximum": 10, "step": 1}).needs_reload_ui(),
}))

options_templates.update(options_section((None, "Hidden options"), {
    "disabled_extensions": OptionInfo([], "Disable these extensions"),
    "disable_all_extensions": OptionInfo("none", "Disable all extensions (preserves the list of disabled extensions)", "Radio", {"choices": ["none", "extra", "all"]}),
    "sd_checkpoint_hash": OptionInfo("", "SHA256 hash of the current checkpoint"),
}))

# A1111 settings that nothing in Atelier acts on, so the Settings tab does not offer them: an extension that reads one
# through opts still gets A1111's default (Options falls back to this table); they are neither shown nor saved.
retired_options = {
    "save_images_before_face_restoration": False,
    "save_images_before_highres_fix": False,
    "save_images_before_color_correction": False,
    "save_mask": False,
    "save_mask_composite": False,
    "save_init_img": False,
    "save_incomplete_images": False,
    "upscaler_for_img2img": None,
    "face_restoration_unload": False,
    "auto_launch_browser": "Local",
    "show_warnings": False,
    "samples_log_stdout": False,
    "disable_mmap_load_safetensors": False,
    "sd_checkpoints_keep_in_cpu": True,
    "sd_checkpoint_cache": 0,
    "sd_unet": "Automatic",
    "enable_quantization": False,
    "enable_batch_seeds": True,
    "sdxl_clip_l_skip": False,
    "upcast_attn": False,
    "sd_vae_checkpoint_cache": 0,
    "auto_vae_precision_bfloat16": False,
    "inpainting_mask_weight": 1.0,
    "img2img_color_correction": False,
    "img2img_fix_steps": False,
    "return_mask": False,
    "return_mask_composite": False,
    "overlay_inpaint": True,
    "s_min_uncond": 0.0,
    "pad_cond_uncond": False,
    "persistent_cond_cache": True,
    "skip_early_cond": 0.0,
    "use_old_emphasis_implementation": False,
    "no_dpmpp_sde_batch_determinism": False,
    "hires_fix_use_firstpass_conds": False,
    "add_user_name_to_info": False,
    "live_preview_content": "Prompt",
    "live_preview_fast_interrupt": False,
    "ddim_discretize": "uniform",
    "sgm_noise_multiplier": False,
    "sd_noise_schedule": "Default",
    "restore_config_state_file": "",
}

saved_opts = Options(options_templates, restricted_opts, retired_options)  # the settings of config.json; jobs never write them
opts = ContextFacade("settings", saved_opts)  # A1111's name: a running job's settings view, else the saved ones
