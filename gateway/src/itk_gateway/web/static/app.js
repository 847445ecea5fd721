// The page: the job form, the live view of one job, and the key's recent jobs.

import { ApiError, apiKey, followEvents, getJson, request, setApiKey, submitJob } from "./api.js";
import { renderLanes } from "./lanes-view.js";
import { LivePlayer } from "./live-player.js";
import { renderQuality } from "./quality-view.js";
import { MicRecorder } from "./recorder.js";
import { SpeakerBoxes } from "./speakers.js";

const $ = (id) => document.getElementById(id);
const ACTIVE = new Set(["IN_QUEUE", "RUNNING"]);
let config = { providers: [], pools: [], presets: [], default_provider: "", hls_timeline_start_sec: 0,
  video_input: false, api_key_required: false };
const PRESET_LABELS = { quality: "quality (40 steps)", fast: "fast (8 steps)", turbo: "turbo (4 steps)" };
// Event streams followed for the active jobs of the Recent list; a browser holds about six
// connections to one server, and the open job's stream and its video need some of them.
const RECENT_FOLLOWED = 3;
let recentWatch = null; // AbortController of those streams
const speakerBoxes = new SpeakerBoxes(document.getElementById("speaker-boxes"),
                                      document.getElementById("boxes-status"));
let recorded = null; // a File from the microphone, used instead of the audio picker
let current = null; // { id, abort: AbortController, player: LivePlayer | null }

// -- the API key: asked for where the page shows it, at the top -----------------------------------

function askForKey() {
  const note = $("key-needed");
  note.textContent = apiKey()
    ? "The API key in the field above was not accepted: check it, or paste another one."
    : "This deployment needs an API key: paste yours into the API key field above (it stays in this browser).";
  note.hidden = false;
  $("key-box").open = true;
  if (!apiKey()) $("api-key").focus({ preventScroll: true });
  window.scrollTo({ top: 0 });
}

function isKeyRefusal(error) {
  return error instanceof ApiError && (error.status === 401 || error.status === 403);
}

function duration(seconds) {
  const s = Math.round(seconds);
  return s >= 3600 ? `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`
    : s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

// -- the form -------------------------------------------------------------------------------------

function showFile(kind, file) {
  $(`${kind}-text`).textContent = file ? `${file.name} (${(file.size / 1048576).toFixed(1)} MB)` :
    kind === "audio_2" ? "Drop person 2's recording here for two people talking" :
    `Drop a ${kind === "image" ? "portrait" : "recording"} here, or choose a file`;
  if (kind === "image") {
    speakerBoxes.show(file);
    const preview = $("image-preview");
    preview.hidden = !file || !file.type.startsWith("image/");
    if (!preview.hidden) preview.src = URL.createObjectURL(file);
  }
}

function setupDrop(kind) {
  const zone = $(`${kind}-drop`);
  const input = $(kind);
  input.addEventListener("change", () => {
    if (kind === "audio") recorded = null;
    showFile(kind, input.files[0]);
  });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (!e.dataTransfer.files.length) return;
    input.files = e.dataTransfer.files;
    input.dispatchEvent(new Event("change"));
  });
}

function setupRecorder() {
  const button = $("record");
  const mic = new MicRecorder();
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    button.disabled = true;
    $("record-status").textContent = "Recording is not available in this browser.";
    return;
  }
  button.addEventListener("click", async () => {
    try {
      if (!mic.recording) {
        await mic.start();
        button.textContent = "Stop recording";
        button.setAttribute("aria-pressed", "true");
        $("record-status").textContent = "Recording…";
        return;
      }
      recorded = await mic.stop();
      button.textContent = "Record again";
      button.setAttribute("aria-pressed", "false");
      $("record-status").textContent = `Recorded ${(recorded.size / 1024).toFixed(0)} KB`;
      $("audio").value = "";
      showFile("audio", recorded);
      const preview = $("audio-preview");
      preview.src = URL.createObjectURL(recorded);
      preview.hidden = false;
    } catch (error) {
      $("record-status").textContent = `Microphone: ${error.message}`;
    }
  });
}

function size() {
  const choice = $("size").value;
  if (choice !== "custom") return choice.split("x");
  return [$("width").value, $("height").value];
}

async function onSubmit(event) {
  event.preventDefault();
  const error = $("form-error");
  error.textContent = "";
  const image = $("image").files[0];
  const audio = recorded || $("audio").files[0];
  if (!image) { error.textContent = "Choose a portrait first."; $("image").focus(); return; }
  if (!audio) { error.textContent = "Choose or record a speech recording first."; $("audio").focus(); return; }
  const [width, height] = size();
  const form = new FormData();
  form.append("image", image, image.name);
  form.append("audio", audio, audio.name);
  form.append("width", width);
  form.append("height", height);
  form.append("prompt", $("prompt").value);
  form.append("provider", $("provider").value);
  if ($("lane-count").value) form.append("lanes", $("lane-count").value);
  if (!$("preset").disabled && $("preset").value) form.append("sampling", JSON.stringify({ preset: $("preset").value }));
  const second = $("audio_2").files[0];
  if (second) {
    form.append("audio_2", second, second.name);
    form.append("audio_type", $("audio-type").value);
    if (speakerBoxes.boxes.length) form.append("boxes", JSON.stringify(speakerBoxes.boxes));
  }
  const submit = $("submit");
  const bar = $("upload-progress");
  submit.disabled = true;
  bar.hidden = false;
  try {
    // One key per click: a retried upload of the same click never makes a second job.
    const created = await submitJob(form, (share) => { bar.value = Math.round(share * 100); }, crypto.randomUUID());
    openJob(created.id);
    loadRecent();
  } catch (e) {
    if (isKeyRefusal(e)) {
      askForKey();
      error.textContent = "Not sent: an API key is needed. Paste it into the API key field at the top of the page.";
    } else {
      error.textContent = e instanceof ApiError ? `${e.message}${e.code ? ` (${e.code})` : ""}` : String(e);
    }
  } finally {
    submit.disabled = false;
    bar.hidden = true;
    bar.value = 0;
  }
}

// -- one job ----------------------------------------------------------------------------------------

function renderJob(job) {
  const status = $("job-status");
  const pct = job.frames_total ? Math.floor((100 * job.frames_done) / job.frames_total) : job.progress;
  const label = {
    IN_QUEUE: "Waiting for a generator", RUNNING: "Rendering", COMPLETED: "Done",
    FAILED: "Failed", CANCELLED: "Cancelled", TIMED_OUT: "Timed out",
  }[job.status] || job.status;
  status.textContent = `${label} — ${job.status === "COMPLETED" ? 100 : pct}%`;
  status.dataset.status = job.status;
  $("job-progress").value = job.progress;
  const parts = [];
  if (job.frames_total) parts.push(`frames ${job.frames_done} / ${job.frames_total}`);
  if (job.lanes?.length) parts.push(`${job.lanes.length} lane${job.lanes.length > 1 ? "s" : ""}`);
  if (job.chunk_count) parts.push(`pieces ${job.chunks_done} / ${job.chunk_count}`);
  if (job.eta_sec) parts.push(`about ${duration(job.eta_sec)} left`);
  if (job.speakers?.length) {
    const from = job.boxes_from === "faces" ? "faces found in the portrait" : "boxes as drawn";
    parts.push(`two people (${job.audio_type}), ${from}: ` +
      job.speakers.map((s) => `person ${s.person} [${s.box.join(", ")}]`).join(", "));
    if (current?.id === job.id && speakerBoxes.image) speakerBoxes.showUsed(job.speakers.map((s) => s.box));
  }
  if (job.error) parts.push(job.error);
  $("job-detail").textContent = parts.join(" · ");
  renderLanes($("lanes"), $("timeline"), job);
  renderQuality($("quality"), job);
  $("cancel").hidden = !ACTIVE.has(job.status);
  const download = $("download");
  download.hidden = !job.video_available;
  if (job.video_available && !download.dataset.ready) prepareDownload(job);
  if (current && !current.player && job.segments_ready > 0) startPlayer(job.id);
  const row = document.querySelector(`#recent button[data-job="${job.id}"]`);
  if (row) showRecentStatus(row, job);
}

function prepareDownload(job) {
  const link = $("download");
  link.dataset.ready = "1";
  link.download = `${job.id}.mp4`;
  if (job.video_url) { link.href = job.video_url; return; }
  if (!apiKey()) { link.href = `/jobs/${job.id}/video`; return; }
  // With a key the file is fetched with its header, then saved from memory.
  link.href = "#";
  link.onclick = async (e) => {
    e.preventDefault();
    const blob = await (await request("GET", `/jobs/${job.id}/video`)).blob();
    const save = document.createElement("a");
    save.href = URL.createObjectURL(blob);
    save.download = link.download;
    save.click();
  };
}

function startPlayer(jobId) {
  const note = $("player-note");
  const video = $("player");
  // Shown once it has a frame to show: an empty element is a black box at 0:00.
  note.textContent = "Preparing the live video…";
  video.addEventListener("loadeddata", () => { video.hidden = false; }, { once: true });
  current.player = new LivePlayer($("player"), (segments, ended) => {
    note.textContent = ended ? `Playing all ${segments} parts.` : `Playing while it renders: ${segments} part(s) ready.`;
  });
  current.player.play(jobId, config.hls_timeline_start_sec || 0).catch((error) => {
    note.textContent = `Live playback stopped: ${error.message}`;
  });
}

function openJob(jobId) {
  if (current) { current.abort.abort(); current.player?.stop(); }
  $("key-needed").hidden = true;
  current = { id: jobId, abort: new AbortController(), player: null };
  // The address names the job, so it can be bookmarked, shared or reloaded.
  history.replaceState(null, "", `#${jobId}`);
  const section = $("job");
  section.hidden = false;
  $("job-id").textContent = jobId;
  $("player").removeAttribute("src");
  $("player").hidden = true;
  $("player-note").textContent = "";
  $("download").removeAttribute("data-ready");
  $("lanes").replaceChildren();
  $("timeline").hidden = true;
  renderQuality($("quality"), {});
  $("job-status").textContent = "Connecting…";
  const mine = current;
  followEvents(jobId, (kind, data) => {
    if (mine !== current) return;
    if (kind === "end") { loadRecent(); return; }
    renderJob(data);
  }, mine.abort.signal).catch((error) => {
    if (isKeyRefusal(error)) askForKey();
    $("job-status").textContent = `Cannot follow the job: ${error.message}`;
  });
  section.scrollIntoView({ behavior: "smooth", block: "start" });
}

async function cancelJob() {
  if (!current) return;
  try {
    await request("POST", `/jobs/${current.id}/cancel`);
  } catch (error) {
    $("job-detail").textContent = error.message;
  }
}

// -- recent jobs ------------------------------------------------------------------------------------

function showRecentStatus(button, job) {
  button.querySelector(".st").textContent = `${job.status}${ACTIVE.has(job.status) ? ` ${job.progress}%` : ""}`;
  button.dataset.status = job.status;
  button.setAttribute("aria-label", `Open job ${job.id}, ${job.status}`);
}

// An active job's row follows the job's own event stream, so it never shows a stale state.
function followRecent(button, jobId, signal) {
  followEvents(jobId, (kind, data) => {
    if (kind === "end") showRecentStatus(button, { id: jobId, status: data.status, progress: 100 });
    else showRecentStatus(button, data);
  }, signal).catch(() => { /* the list's Refresh button remains */ });
}

async function loadRecent() {
  const list = $("recent");
  recentWatch?.abort();
  recentWatch = new AbortController();
  const signal = recentWatch.signal;
  try {
    const { jobs } = await getJson("/jobs?limit=20");
    $("key-needed").hidden = true;
    let followed = 0;
    list.replaceChildren(...jobs.map((job) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.job = job.id;
      button.innerHTML = '<span class="st"></span><code></code><span class="when"></span>';
      showRecentStatus(button, job);
      button.querySelector("code").textContent = job.id;
      button.querySelector(".when").textContent = new Date(job.created_at).toLocaleString();
      button.addEventListener("click", () => openJob(job.id));
      // The open job's row is kept live by its own stream (renderJob).
      if (ACTIVE.has(job.status) && job.id !== current?.id && followed < RECENT_FOLLOWED) {
        followed += 1;
        followRecent(button, job.id, signal);
      }
      item.append(button);
      return item;
    }));
    if (!jobs.length) list.innerHTML = "<li class=\"detail\">No jobs yet.</li>";
  } catch (error) {
    list.innerHTML = "";
    const item = document.createElement("li");
    item.className = "error";
    const keyNeeded = isKeyRefusal(error);
    item.textContent = keyNeeded ? "Enter a valid API key (at the top of the page) to see your jobs." : error.message;
    list.append(item);
    if (keyNeeded) askForKey();
  }
}

// -- start --------------------------------------------------------------------------------------

function poolOf(name) {
  return (config.pools || []).find((pool) => pool.name === name);
}

// The Provider menu: each pool once (aliases lead to it and are named in its hint), with the
// backend its generators report; the Preset menu offers what the chosen pool's backend honours.
function showProviders() {
  const provider = $("provider");
  const pools = config.pools?.length ? config.pools
    : config.providers.map((name) => ({ name, aliases: [], backends: [], generators_ready: 0, presets: config.presets }));
  provider.replaceChildren(...pools.map((pool) => new Option(
    pool.backends.length ? `${pool.name} (${pool.backends.join(", ")})` : pool.name,
    pool.name, false, pool.name === config.default_provider)));
  showPoolChoices();
}

function showPoolChoices() {
  const pool = poolOf($("provider").value);
  const help = $("provider-help");
  const ready = pool ? `${pool.generators_ready} generator${pool.generators_ready === 1 ? "" : "s"} ready` : "";
  help.textContent = [ready, pool?.aliases.length ? `also called ${pool.aliases.join(", ")}` : ""]
    .filter(Boolean).join("; ");
  const presets = pool ? pool.presets : config.presets;
  const select = $("preset");
  const chosen = select.value;
  if (presets.length) {
    select.replaceChildren(...presets.map((name) => new Option(PRESET_LABELS[name] || name, name, false,
      name === (chosen || "quality"))));
    select.disabled = false;
    $("preset-help").textContent = "";
  } else {
    select.replaceChildren(new Option("none", ""));
    select.disabled = true;
    const backends = pool?.backends.join(", ") || "this pool";
    $("preset-help").textContent = `${backends} renders the same with any preset`;
  }
}

async function loadConfig() {
  try {
    config = await getJson("/config");
  } catch { /* the defaults above */ }
  showProviders();
  if (config.api_key_required && !apiKey()) askForKey();
  if (config.video_input) {
    $("image").accept = "image/*,video/*";
    $("image-text").textContent = "Drop a portrait or a video to dub here, or choose a file";
  }
}

function main() {
  const key = $("api-key");
  key.value = apiKey();
  key.addEventListener("change", () => { setApiKey(key.value.trim()); loadRecent(); });
  $("provider").addEventListener("change", showPoolChoices);
  setupDrop("image");
  setupDrop("audio");
setupDrop("audio_2");
$("clear-boxes").addEventListener("click", () => speakerBoxes.clear());
  setupRecorder();
  $("size").addEventListener("change", () => { $("custom-size").hidden = $("size").value !== "custom"; });
  $("job-form").addEventListener("submit", onSubmit);
  $("cancel").addEventListener("click", cancelJob);
  $("refresh").addEventListener("click", loadRecent);
  loadConfig().then(() => {
    const linked = location.hash.slice(1);
    if (/^job-\d+-(?:[0-9a-f]{32}|[0-9a-f]{8})$/.test(linked)) openJob(linked);
  });
  loadRecent();
}

main();
