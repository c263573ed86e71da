// Page translation (A1111's localization.js). With a localization chosen in Settings, the server puts its map
// {English text: translation} in window.localization; the text of labels, buttons and other elements, and their
// title and placeholder attributes, are replaced where the whole (trimmed) text is a key, in the page and in whatever
// is added to it later. Without a localization nothing happens.

// controls whose choices are the user's own names (models, styles, upscalers): never translated
const localizationIgnored = [
    "setting_sd_model_checkpoint", "setting_sd_vae", "setting_sd_hypernetwork", "txt2img_styles", "img2img_styles",
    "txt2img_refiner_checkpoint", "img2img_refiner_checkpoint", "txt2img_hr_checkpoint", "img2img_hr_checkpoint",
    "extras_upscaler_1", "extras_upscaler_2", "modelmerger_primary_model_name", "modelmerger_secondary_model_name",
    "modelmerger_tertiary_model_name", "train_embedding", "train_hypernetwork",
].map(function(id) { return "#" + id; }).join(", ");
const localizationSkippedParents = new Set(["SCRIPT", "STYLE", "TEXTAREA"]);
const localizationNumber = /^[.\d]+$/;
const localizationEmoji = /[\p{Extended_Pictographic}\u{1F3FB}-\u{1F3FF}\u{1F9B0}-\u{1F9B3}]/u;
const localizedTextNodes = new WeakMap(); // text node -> the translation put there, so it is not looked up again

function hasLocalization() {
    return !!window.localization && Object.keys(window.localization).length > 0;
}

// the translation of text, or undefined; only strings count (a localization may carry flags such as "rtl")
function getTranslation(text) {
    const translation = text ? window.localization[text] : undefined;
    return typeof translation === "string" ? translation : undefined;
}

function localizeTextNode(node) {
    const parent = node.parentElement;
    const text = node.textContent.trim();
    if (!parent || !text || localizedTextNodes.get(node) === node.textContent) return;
    if (localizationSkippedParents.has(parent.nodeName) || parent.closest(localizationIgnored)) return;
    if (localizationNumber.test(text) || localizationEmoji.test(text)) return;
    const translation = getTranslation(text);
    if (translation !== undefined) {
        node.textContent = translation;
        localizedTextNodes.set(node, translation);
    }
}

function localizeAttributes(element) {
    ["title", "placeholder"].forEach(function(name) {
        const translation = getTranslation(element.getAttribute(name));
        if (translation !== undefined && !element.closest(localizationIgnored)) {
            element.setAttribute(name, translation);
        }
    });
}

// node and everything under it
function localizeNode(node) {
    if (node.nodeType === Node.TEXT_NODE) {
        localizeTextNode(node);
        return;
    }
    if (node.nodeType !== Node.ELEMENT_NODE && node.nodeType !== Node.DOCUMENT_NODE &&
        node.nodeType !== Node.DOCUMENT_FRAGMENT_NODE) return;
    if (node.nodeType === Node.ELEMENT_NODE) localizeAttributes(node);
    node.querySelectorAll("[title], [placeholder]").forEach(localizeAttributes);
    const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
    const textNodes = [];
    while (walker.nextNode()) textNodes.push(walker.currentNode);
    textNodes.forEach(localizeTextNode);
}

(function() {
    let wholePageDone = false;
    // the first call after the page's components exist translates all of it; later calls what was added
    onUiUpdate(function(mutations) {
        if (!hasLocalization()) return;
        if (!wholePageDone) {
            wholePageDone = true;
            localizeNode(gradioApp());
            return;
        }
        mutations.forEach(function(mutation) {
            mutation.addedNodes.forEach(localizeNode);
        });
    });
})();
