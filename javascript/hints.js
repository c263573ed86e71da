// Hover texts for the page's symbol buttons and a few controls, by the element's text (A1111's `titles`, which
// ui.js applies to every button, label and option as it appears; extensions add theirs to the same object).
Object.assign(titles, {
    "\u{1F3B2}\uFE0F": "Random seed: set the seed to -1, so that every generation picks a new one",
    "\u{1F3B2}": "Random seed: set the seed to -1, so that every generation picks a new one",
    "\u267B\uFE0F": "Reuse the seed of the image selected in the gallery (of the first image when none is)",
    "\u21C5": "Swap width and height",
    "\u{1F504}": "Refresh the list",
    "\u{1F4C2}": "Open the folder the images are saved in",
    "\u{1F4BE}": "Save: the chosen prompts as a style, or the gallery's images to the log folder",
    "\u{1F4CB}": "Apply the chosen styles to the prompts (and clear the choice)",
    "\u{1F4D0}": "Take width and height from the uploaded image",
    "Generate": "Make images with these settings (Ctrl+Enter); press again to queue another job",
    "Interrupt": "Stop: after the current image when there are several, at once on a second press (Esc)",
    "Interrupting...": "Press again to stop at once",
    "Skip": "Skip the current image and go on with the next (Alt+Enter)",
    "Hires. fix": "Make the image at a low size, then upscale it and add detail in a second pass; opening it enables it",
    "Refiner": "Switch to a second model for the last steps; opening it enables it",
});
