// Plays a job's growing HLS playlist (/jobs/{id}/hls/index.m3u8) through Media Source
// Extensions: the initialization section, then each new segment as the playlist lists it,
// until #EXT-X-ENDLIST. Our playlist is simple (one rendition, fMP4, EXT-X-MAP), so reading it
// takes a few lines; fetching with the API key header works where a plain <video src> cannot.

import { request } from "./api.js";

const RELOAD_MS = 1000;
// Played media kept behind the playhead; older ranges are removed so a long video stays within
// the browser's buffer quota.
const KEEP_BEHIND_SEC = 30;

function parsePlaylist(text) {
  const entries = [];
  let init = null;
  for (const line of text.split("\n").map((l) => l.trim())) {
    const map = line.match(/^#EXT-X-MAP:URI="([^"]+)"/);
    if (map) init = map[1];
    else if (line && !line.startsWith("#")) entries.push({ uri: line, init });
  }
  return { entries, ended: text.includes("#EXT-X-ENDLIST") };
}

function codecsOf(init) {
  // avc1 profile from the avcC box, mp4a for AAC-LC: enough for isTypeSupported and addSourceBuffer.
  const bytes = new Uint8Array(init);
  for (let i = 0; i + 8 < bytes.length; i++) {
    if (bytes[i] === 0x61 && bytes[i + 1] === 0x76 && bytes[i + 2] === 0x63 && bytes[i + 3] === 0x43) {
      const hex = (b) => b.toString(16).padStart(2, "0");
      return `avc1.${hex(bytes[i + 5])}${hex(bytes[i + 6])}${hex(bytes[i + 7])}, mp4a.40.2`;
    }
  }
  return "avc1.64001f, mp4a.40.2";
}

export class LivePlayer {
  constructor(video, onState) {
    this.video = video;
    this.onState = onState;
    this.stopped = false;
  }

  async play(jobId, timelineStartSec) {
    const base = `/jobs/${jobId}/hls/`;
    const source = new MediaSource();
    this.video.src = URL.createObjectURL(source);
    await new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }));
    let buffer = null;
    let currentInit = null;
    let appended = 0;
    const update = (change) => new Promise((resolve, reject) => {
      buffer.addEventListener("updateend", resolve, { once: true });
      buffer.addEventListener("error", reject, { once: true });
      change();
    });
    const append = async (data) => {
      for (;;) {
        const played = this.video.currentTime - KEEP_BEHIND_SEC;
        if (buffer.buffered.length && played > buffer.buffered.start(0) + 1) {
          await update(() => buffer.remove(0, played));
        }
        try {
          return await update(() => buffer.appendBuffer(data));
        } catch (error) {
          // Full: wait for playback to move on, then drop what it left behind.
          if (error.name !== "QuotaExceededError" || this.stopped) throw error;
          await new Promise((r) => setTimeout(r, RELOAD_MS));
        }
      }
    };
    while (!this.stopped) {
      let playlist;
      try {
        playlist = parsePlaylist(await (await request("GET", base + "index.m3u8", { cache: "no-store" })).text());
      } catch (error) {
        if (error.status === 503) { await new Promise((r) => setTimeout(r, RELOAD_MS)); continue; }
        throw error;
      }
      for (const entry of playlist.entries.slice(appended)) {
        if (this.stopped) return;
        if (entry.init !== currentInit) {
          const init = await (await request("GET", base + entry.init)).arrayBuffer();
          if (!buffer) {
            buffer = source.addSourceBuffer(`video/mp4; codecs="${codecsOf(init)}"`);
            // The stream's timeline starts a little after 0 (room for B-frames); show it from 0.
            buffer.timestampOffset = -timelineStartSec;
          }
          await append(init);
          currentInit = entry.init;
        }
        await append(await (await request("GET", base + entry.uri)).arrayBuffer());
        appended += 1;
        // A playhead before the first buffered frame (the stream starts a few milliseconds
        // after 0) would sit on a black picture: move it onto the media.
        if (buffer.buffered.length && this.video.currentTime < buffer.buffered.start(0)) {
          this.video.currentTime = buffer.buffered.start(0);
        }
        this.onState(appended, playlist.ended && appended === playlist.entries.length);
        if (appended === 1) this.video.play().catch(() => { /* autoplay refused: the controls remain */ });
      }
      if (playlist.ended) {
        if (source.readyState === "open") source.endOfStream();
        return;
      }
      await new Promise((r) => setTimeout(r, RELOAD_MS));
    }
  }

  stop() {
    this.stopped = true;
  }
}
