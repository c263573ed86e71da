// Tooltips (A1111's hints): titles in our words for the buttons' texts and the controls' labels, added to the page's
// `titles` table (ui.js applies it, localizations translate it); a button the table does not know is titled by its
// aria-label or text, so that none is left without one. The prompt tools' titles are in promptTools.js.
Object.assign(titles, {
    // tool buttons, by their text
    "\u{1f3b2}\ufe0f": "Random seed: set the seed to -1, so that every generation picks a new one",
    "\u{1f3b2}": "Random seed: set the seed to -1, so that every generation picks a new one",
    "\u267b\ufe0f": "Reuse the seed of the selected image (or of the last generation)",
    "\u21c5": "Swap width and height",
    "\u{1f504}": "Refresh the list",
    "\u{1f4cb}": "Add the chosen styles' texts to the prompts and unselect them",
    "\u{1f4be}": "Save the current prompts as a new style",
    "\u{1f4ce}": "Interrogate CLIP: describe the image as a prompt",
    "\u{1f4e6}": "Interrogate DeepBooru: describe the image as booru tags",
    "\u{1f4d0}": "Take width and height from the image",
    "\u{1f4c2}": "Open the output folder",
    "\u{1f5bc}\ufe0f": "Show the selected image in the full page viewer",
    "\u274c": "Close",
    "Generate": "Make images (Ctrl+Enter); press again to queue another job; right-click for Generate forever",
    "Interrupt": "Stop: after the current image, or at once on a second press (Esc)",
    "Interrupting...": "Press again to stop at once",
    "Skip": "Skip to the next image of the batch (Alt+Enter)",
    "Save": "Save the selected image (or all) to the log folder with its parameters in a CSV",
    "Zip": "Save the images as one zip file",
    "Send to img2img": "Send the image and its parameters to img2img",
    "Send to inpaint": "Send the image and its parameters to img2img's Inpaint",
    "Send to extras": "Send the image to Extras",
    // generation controls, by their label
    "Sampling method": "The sampler: how each step moves from noise towards the image",
    "Schedule type": "How the noise levels are spaced over the steps",
    "Sampling steps": "How many denoising steps: more is slower, and past a point changes little",
    "Width": "Image width in pixels (a multiple of 8)",
    "Height": "Image height in pixels (a multiple of 8)",
    "Batch count": "How many batches to make one after another",
    "Batch size": "How many images to make at once (uses more memory)",
    "CFG Scale": "How closely the image follows the prompt: higher is stricter, too high burns",
    "Distilled CFG Scale": "The guidance that Flux-style distilled models take as an input",
    "Seed": "The starting noise: the same seed and settings give the same image; -1 picks one at random",
    "Extra": "Show the variation seed and seed resize controls",
    "Variation seed": "A second seed whose noise is mixed into the first",
    "Variation strength": "How much of the variation seed's noise to mix in: 0 none, 1 only it",
    "Resize seed from width": "Make noise as if for this width, to keep a composition at another size",
    "Resize seed from height": "Make noise as if for this height, to keep a composition at another size",
    "Denoising strength": "How much the image may change: 0 keeps it, 1 replaces it",
    "Hires. fix": "Make the image small, then upscale it and refine the details in a second pass; opening it enables it",
    "Upscaler": "How the first pass is enlarged before the second pass",
    "Hires steps": "Steps of the second pass; 0 uses the sampling steps",
    "Upscale by": "How many times larger the second pass is",
    "Resize width to": "The second pass's width; 0 follows Upscale by",
    "Resize height to": "The second pass's height; 0 follows Upscale by",
    "Refiner": "Finish the image with another checkpoint; opening it enables it",
    "Checkpoint": "The checkpoint that finishes the image",
    "Switch at": "The fraction of the steps after which the refiner takes over",
    "Resize mode": "How the image is fitted to the new size",
    "Mask blur": "How many pixels the mask's edge is softened over",
    "Mask mode": "Repaint the masked area, or everything but it",
    "Masked content": "What the masked area starts from before it is repainted",
    "Inpaint area": "Repaint at the whole picture's size, or only the masked area at full resolution",
    "Only masked padding, pixels": "Context round the masked area when only it is repainted",
    "Styles": "Saved prompt pieces added to the prompts when you generate",
    "Script": "Run the generation through a script",
    "Soft inpainting": "Blend the repainted area into the original by the mask's softness",
    "Scale": "How many times larger or smaller the image is made",
});

onUiUpdate(function() {
    const app = gradioApp();
    if (!app) return;
    app.querySelectorAll("button:not([title])").forEach(function(button) {
        const text = (button.textContent || "").trim();
        button.title = titles[text] || button.getAttribute("aria-label") || text || "Button";
    });
});
