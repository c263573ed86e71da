// Alt+Left/Right in a prompt moves the comma-separated element at the caret one place (A1111's keyedit_move).

// the text with part `index` swapped with its neighbour in `direction`, each part keeping the spaces of its place;
// null at either end
function keyeditMove(text, caret, direction) {
    const parts = text.split(",");
    let index = 0;
    for (let offset = parts[0].length; offset < caret && index < parts.length - 1; offset += parts[index].length + 1) {
        index++;
    }
    const other = index + direction;
    if (other < 0 || other >= parts.length) return null;
    const core = function(part) { return part.trim(); };
    const place = function(part, content) { return part.replace(core(part), content); };
    const moved = core(parts[index]);
    const [a, b] = [parts[index], parts[other]];
    parts[other] = core(b) ? place(b, moved) : b + moved;
    parts[index] = core(a) ? place(a, core(b)) : core(b);
    let start = 0;
    for (let i = 0; i < other; i++) start += parts[i].length + 1;
    start += parts[other].indexOf(moved);
    return {text: parts.join(","), start: start, end: start + moved.length};
}

document.addEventListener("keydown", function(event) {
    if (!event.altKey || event.ctrlKey || event.metaKey || (event.key !== "ArrowLeft" && event.key !== "ArrowRight")) return;
    if (!opts.keyedit_move || !isPromptTextarea(event.target)) return;
    const target = event.target;
    const edit = keyeditMove(target.value, target.selectionStart, event.key === "ArrowLeft" ? -1 : 1);
    if (!edit) return;
    event.preventDefault();
    target.value = edit.text;
    target.setSelectionRange(edit.start, edit.end);
    updateInput(target);
});
