// A handle between the two columns of a .resize-handle-row: drag to share the width, double-click to reset.

function setupResizeHandle(row) {
    const columns = Array.from(row.children).filter(function(child) { return child.classList.contains("column"); });
    if (columns.length < 2 || row.querySelector(":scope > .resize-handle")) {
        return;
    }
    const left = columns[0];
    const handle = document.createElement("div");
    handle.className = "resize-handle";
    row.insertBefore(handle, columns[1]);
    handle.addEventListener("mousedown", function(event) {
        event.preventDefault();
        const start = event.clientX;
        const width = left.getBoundingClientRect().width;
        const move = function(moveEvent) {
            const total = row.getBoundingClientRect().width;
            const next = Math.min(Math.max(width + moveEvent.clientX - start, total * 0.2), total * 0.8);
            left.style.flex = "0 0 " + next + "px";
        };
        const stop = function() {
            document.removeEventListener("mousemove", move);
            document.removeEventListener("mouseup", stop);
        };
        document.addEventListener("mousemove", move);
        document.addEventListener("mouseup", stop);
    });
    handle.addEventListener("dblclick", function() {
        left.style.flex = "";
    });
}

onUiUpdate(function() {
    gradioApp().querySelectorAll(".resize-handle-row").forEach(setupResizeHandle);
});
