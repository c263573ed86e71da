// The Queue panel (ui_queue.py): a row's button sends its task id through the panel's hidden box and button. A browser
// notification (and the notification sound, as A1111's notification_audio) when one of the page's jobs finishes.

// the page's HTML blocks drop inline handlers: the buttons' clicks are caught here
document.addEventListener("click", function(event) {
    const button = event.target.closest && event.target.closest(".queue-panel button.queue-cancel");
    const row = button && button.closest("tr[data-task]");
    const box = row && button.closest(".queue-panel").querySelector(".queue-cancel-input textarea, .queue-cancel-input input");
    if (!box) return;
    box.value = row.dataset.task;
    updateInput(box);
    button.closest(".queue-panel").querySelector("button.queue-cancel-send").click();
});

const atelierJobsRunning = {};

// the notification shows the job's first image (A1111's notification.js); a click on it brings the page forward
function notifyJobFinished(tabname) {
    if (opts.notification_audio) {
        const audio = gradioApp().querySelector("#audio_notification audio");
        if (audio) {
            audio.volume = (opts.notification_volume === undefined ? 100 : opts.notification_volume) / 100;
            audio.play().catch(function() { /* the browser refused autoplay */ });
        }
    }
    if (opts.notification_browser && window.Notification && Notification.permission === "granted" && !document.hasFocus()) {
        const sources = [...new Set([...gradioApp().querySelectorAll("#" + tabname + "_gallery img")].map(img => img.src))];
        const body = sources.length ? "Generated " + sources.length + " image" + (sources.length > 1 ? "s" : "") : "Generation finished";
        const notification = new Notification("Atelier", {body: body, icon: sources[0], image: sources[0]});
        notification.onclick = function() {
            window.focus();
            this.close();
        };
    }
}

// the first Generate asks for permission to notify (a browser asks only in answer to a click)
document.addEventListener("click", function(event) {
    if (!opts.notification_browser || !window.Notification || Notification.permission !== "default") return;
    if (event.target.closest && event.target.closest("#txt2img_generate, #img2img_generate")) Notification.requestPermission();
}, true);

// a tab's job ends when its Interrupt button goes (the outputs are in the gallery by then); its own display, not
// whether its tab is in front
function jobRunsOn(tabname) {
    const button = gradioApp().querySelector("#" + tabname + "_interrupt");
    return !!button && getComputedStyle(button).display !== "none";
}

setInterval(function() {
    if (!atelierLoaded) return;
    for (const tabname of ["txt2img", "img2img"]) {
        const running = jobRunsOn(tabname);
        if (atelierJobsRunning[tabname] && !running) notifyJobFinished(tabname);
        atelierJobsRunning[tabname] = running;
    }
}, 500);
