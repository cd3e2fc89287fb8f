// The listening room: one shared player for the play buttons, and the server's reason when audio cannot play.
(function () {
  "use strict";
  const player = document.getElementById("player");
  const nowPlaying = document.getElementById("now-playing-title");
  const message = document.getElementById("audio-message");

  // A media element only says "error"; the audio view answers 404 {"detail": reason}, so ask it why.
  async function explain(audio, target) {
    const src = audio.currentSrc || audio.src;
    if (!src || !target) return;
    try {
      const answer = await fetch(src, { headers: { Range: "bytes=0-0" }, credentials: "same-origin" });
      if (answer.ok) {
        target.textContent = "The browser could not decode this audio.";
      } else {
        const body = await answer.json().catch(() => ({}));
        target.textContent = body.detail || `The audio answered HTTP ${answer.status}.`;
      }
    } catch (error) {
      target.textContent = `The audio could not be reached: ${error}`;
    }
    target.dataset.explained = "1";
  }

  document.querySelectorAll("button.play[data-src]").forEach((button) => {
    button.addEventListener("click", () => {
      message.textContent = "";
      document.querySelectorAll("li.playing").forEach((row) => row.classList.remove("playing"));
      const row = button.closest("li[data-track]");
      if (row) row.classList.add("playing");
      nowPlaying.textContent = button.dataset.title;
      player.src = button.dataset.src;
      player.play().catch(() => {});  // a failed load is reported by the "error" event below
    });
  });
  player.addEventListener("error", () => explain(player, message));

  const seed = document.getElementById("seed-audio");
  if (seed) {
    const seedMessage = document.getElementById("seed-audio-message");
    seed.addEventListener("error", () => explain(seed, seedMessage));
    if (seed.error) explain(seed, seedMessage);  // failed before this script ran
  }
  document.body.dataset.listenReady = "1";
})();
