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

let atelierJobsRunning = false;

function notifyJobFinished() {
    if (opts.notification_audio) {
        const audio = gradioApp().querySelector("#audio_notification audio");
        if (audio) {
            audio.volume = (opts.notification_volume === undefined ? 100 : opts.notification_volume) / 100;
            audio.play().catch(function() { /* the browser refused autoplay */ });
        }
    }
    if (opts.notification_browser && window.Notification && Notification.permission === "granted" && !document.hasFocus()) {
        new Notification("Atelier", {body: "Generation finished"});
    }
}

// the first Generate asks for permission to notify (a browser asks only in answer to a click)
document.addEventListener("click", function(event) {
    if (!opts.notification_browser || !window.Notification || Notification.permission !== "default") return;
    if (event.target.closest && event.target.closest("#txt2img_generate, #img2img_generate")) Notification.requestPermission();
}, true);

setInterval(function() {
    if (!atelierLoaded) return;
    const running = runningJobProgress() !== null;
    if (atelierJobsRunning && !running) notifyJobFinished();
    atelierJobsRunning = running;
}, 500);
