// An image dropped or pasted on a prompt box fills every control of its tab from the image's parameters (A1111's
// dragdrop.js): the file goes to the tab's hidden #<tab>_prompt_image input, and the server pastes its infotext.

function promptImageInput(textarea) {
    const tab = textarea.closest("#txt2img_toprow") ? "txt2img" : textarea.closest("#img2img_toprow") ? "img2img" : null;
    if (!tab || !textarea.closest(".prompt")) return null;
    return gradioApp().querySelector("#" + tab + "_prompt_image input[type=file]");
}

function imageFiles(transfer) {
    return transfer ? Array.from(transfer.files || []).filter(function(file) { return file.type.startsWith("image/"); }) : [];
}

function sendPromptImage(input, file) {
    const transfer = new DataTransfer();
    transfer.items.add(file);
    input.files = transfer.files;
    input.dispatchEvent(new Event("change", {bubbles: true}));
}

function promptDropTarget(event) {
    const target = event.composedPath()[0];
    return target instanceof HTMLTextAreaElement ? target : null;
}

document.addEventListener("dragover", function(event) {
    const textarea = promptDropTarget(event);
    if (textarea && promptImageInput(textarea) && Array.from(event.dataTransfer.types).includes("Files")) {
        event.preventDefault();
        event.dataTransfer.dropEffect = "copy";
    }
});

document.addEventListener("drop", function(event) {
    const textarea = promptDropTarget(event);
    const input = textarea && promptImageInput(textarea);
    const files = imageFiles(event.dataTransfer);
    if (!input || !files.length) return;
    event.preventDefault();
    event.stopPropagation();
    sendPromptImage(input, files[0]);
}, true);

document.addEventListener("paste", function(event) {
    const textarea = promptDropTarget(event);
    const input = textarea && promptImageInput(textarea);
    const files = imageFiles(event.clipboardData);
    if (!input || !files.length) return;  // text pastes as text
    event.preventDefault();
    sendPromptImage(input, files[0]);
}, true);
