// Ctrl+Up/Down in a prompt changes the weight of the selection, of the word at the caret or of the (text:1.2) or
// <lora:name:0.8> around it (A1111's keys, steps and word delimiters from the keyedit_* settings).

function keyeditDelimiters() {
    const whitespace = {"Tab": "\t", "Carriage Return": "\r", "Line Feed": "\n"};
    const chosen = opts.keyedit_delimiters_whitespace || [];
    return (opts.keyedit_delimiters || "") + chosen.map(function(name) { return whitespace[name] || ""; }).join("");
}

// [open, close] indexes of the innermost openChar...closeChar around [start, end], or null
function keyeditEnclosing(text, start, end, openChar, closeChar) {
    let open = -1;
    for (let i = start - 1, depth = 0; i >= 0; i--) {
        if (text[i] === closeChar) depth++;
        if (text[i] === openChar) {
            if (depth === 0) { open = i; break; }
            depth--;
        }
    }
    if (open < 0) return null;
    for (let i = end, depth = 0; i < text.length; i++) {
        if (text[i] === openChar) depth++;
        if (text[i] === closeChar) {
            if (depth === 0) return [open, i];
            depth--;
        }
    }
    return null;
}

// [start, end] of the word at pos, bounded by the delimiters
function keyeditWord(text, pos, delimiters) {
    let start = pos;
    let end = pos;
    while (start > 0 && !delimiters.includes(text[start - 1])) start--;
    while (end < text.length && !delimiters.includes(text[end])) end++;
    return [start, end];
}

function keyeditFormat(weight) {
    const rounded = parseFloat(weight.toPrecision(12));
    return Number.isInteger(rounded) ? rounded.toFixed(1) : String(rounded);
}

// the new text and selection after one step up (+1) or down (-1), or null when there is nothing to weigh
function keyeditAttention(text, start, end, direction) {
    const weighted = /^([\s\S]*):(-?\d*\.?\d+)$/;
    const tag = start === end ? keyeditEnclosing(text, start, end, "<", ">") : null;
    if (tag) {
        const inner = text.slice(tag[0] + 1, tag[1]);
        const match = inner.match(weighted);
        if (!match) return null;
        const weight = keyeditFormat(parseFloat(match[2]) + direction * opts.keyedit_precision_extra);
        const replaced = text.slice(0, tag[0] + 1) + match[1] + ":" + weight + text.slice(tag[1]);
        return {text: replaced, start: tag[0] + 1, end: tag[0] + 1 + match[1].length};
    }
    const paren = keyeditEnclosing(text, start, end, "(", ")");
    if (paren) {
        const match = text.slice(paren[0] + 1, paren[1]).match(weighted);
        const selectionInside = start === end || (start >= paren[0] + 1 && end <= paren[0] + 1 + (match ? match[1].length : 0));
        if (match && selectionInside) {
            const weight = parseFloat(match[2]) + direction * opts.keyedit_precision_attention;
            const inner = match[1];
            if (keyeditFormat(weight) === "1.0") {  // weight 1 is no weight: the parentheses go
                return {text: text.slice(0, paren[0]) + inner + text.slice(paren[1] + 1), start: paren[0], end: paren[0] + inner.length};
            }
            const replaced = text.slice(0, paren[0] + 1) + inner + ":" + keyeditFormat(weight) + text.slice(paren[1]);
            return {text: replaced, start: paren[0] + 1, end: paren[0] + 1 + inner.length};
        }
    }
    if (start === end) {
        [start, end] = keyeditWord(text, start, keyeditDelimiters());
    }
    while (start < end && /\s/.test(text[start])) start++;
    while (end > start && /\s/.test(text[end - 1])) end--;
    if (start === end) return null;
    const selected = text.slice(start, end);
    const weight = keyeditFormat(1 + direction * opts.keyedit_precision_attention);
    return {text: text.slice(0, start) + "(" + selected + ":" + weight + ")" + text.slice(end), start: start + 1,
        end: start + 1 + selected.length};
}

function isPromptTextarea(target) {
    return target instanceof HTMLTextAreaElement && !!target.closest("[id$=_prompt]");
}

document.addEventListener("keydown", function(event) {
    if (!(event.ctrlKey || event.metaKey) || (event.key !== "ArrowUp" && event.key !== "ArrowDown")) return;
    const target = event.target;
    if (!isPromptTextarea(target)) return;
    const edit = keyeditAttention(target.value, target.selectionStart, target.selectionEnd, event.key === "ArrowUp" ? 1 : -1);
    if (!edit) return;
    event.preventDefault();
    target.value = edit.text;
    target.setSelectionRange(edit.start, edit.end);
    updateInput(target);
});
