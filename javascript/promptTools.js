// Hover texts (A1111's) of the prompt row's tools and of the gallery's ✨ and 🗃️ buttons.
Object.assign(titles, {
    "\u2199\ufe0f": "Read generation parameters from prompt or last generation if prompt is empty into user interface.",
    "\ud83d\uddd1\ufe0f": "Clear prompt",
    "\ud83d\udd8c\ufe0f": "Edit styles",
    "\u2b07\ufe0f": "Copy main UI prompt to style.",
    "\u2728": "Create an upscaled version of the current image using the upscaler chosen in Settings.",
    "\ud83d\uddc3\ufe0f": "Save zip archive with images to a dedicated directory (outdir_save)",
});
