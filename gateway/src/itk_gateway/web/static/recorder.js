// Recording speech from the microphone with MediaRecorder; the result is uploaded like a file.

export class MicRecorder {
  constructor() {
    this.recorder = null;
    this.chunks = [];
  }

  get recording() {
    return this.recorder !== null && this.recorder.state === "recording";
  }

  async start() {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    this.chunks = [];
    this.recorder = new MediaRecorder(stream);
    this.recorder.ondataavailable = (e) => e.data.size && this.chunks.push(e.data);
    this.recorder.start();
  }

  // Resolves to a File named after its container (WebM/Opus in Chromium and Firefox, MP4 in Safari).
  stop() {
    return new Promise((resolve) => {
      const recorder = this.recorder;
      recorder.onstop = () => {
        recorder.stream.getTracks().forEach((t) => t.stop());
        const type = recorder.mimeType || "audio/webm";
        const extension = type.includes("mp4") ? "m4a" : type.includes("ogg") ? "ogg" : "webm";
        resolve(new File(this.chunks, `recording.${extension}`, { type }));
      };
      recorder.stop();
    });
  }
}
