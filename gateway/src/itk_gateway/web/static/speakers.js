// Two people talking: person 2's recording, para / add, and each speaker's face box drawn on the
// portrait (person 1 first). Without drawn boxes the server takes the portrait's faces, left to right.

const COLORS = ["#2a6df4", "#e0542e"];

export class SpeakerBoxes {
  constructor(canvas, status) {
    this.canvas = canvas;
    this.status = status;
    this.image = null; // the portrait as an <img>, at its natural size
    this.boxes = []; // [x0, y0, x1, y1] in pixels of the portrait
    this.drag = null;
    canvas.addEventListener("pointerdown", (e) => this.start(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    canvas.addEventListener("pointerup", (e) => this.end(e));
  }

  show(file) {
    this.boxes = [];
    if (!file || !file.type.startsWith("image/")) { this.image = null; this.draw(); return; }
    const image = new Image();
    image.onload = () => { this.image = image; this.draw(); };
    image.src = URL.createObjectURL(file);
  }

  clear() { this.boxes = []; this.draw(); }

  point(event) {
    const rect = this.canvas.getBoundingClientRect();
    const scale = this.image.naturalWidth / rect.width;
    return [Math.round((event.clientX - rect.left) * scale), Math.round((event.clientY - rect.top) * scale)];
  }

  start(event) {
    if (!this.image || this.boxes.length >= 2) return;
    this.drag = { from: this.point(event), to: this.point(event) };
    this.canvas.setPointerCapture(event.pointerId);
  }

  move(event) {
    if (!this.drag) return;
    this.drag.to = this.point(event);
    this.draw();
  }

  end(event) {
    if (!this.drag) return;
    const [[ax, ay], [bx, by]] = [this.drag.from, this.point(event)];
    this.drag = null;
    const clamp = (v, max) => Math.min(Math.max(v, 0), max);
    const box = [clamp(Math.min(ax, bx), this.image.naturalWidth), clamp(Math.min(ay, by), this.image.naturalHeight),
                 clamp(Math.max(ax, bx), this.image.naturalWidth), clamp(Math.max(ay, by), this.image.naturalHeight)];
    if (box[2] - box[0] > 4 && box[3] - box[1] > 4) this.boxes.push(box);
    this.draw();
  }

  // Boxes to show for a finished job (the detected faces, say), in the portrait's pixels.
  showUsed(boxes) { this.boxes = boxes.map((box) => [...box]); this.draw(); }

  draw() {
    const canvas = this.canvas;
    canvas.hidden = !this.image;
    if (!this.image) { this.status.textContent = ""; return; }
    canvas.width = this.image.naturalWidth;
    canvas.height = this.image.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(this.image, 0, 0);
    context.lineWidth = Math.max(2, canvas.width / 200);
    const boxes = this.drag ? [...this.boxes, [...this.drag.from, ...this.drag.to]] : this.boxes;
    boxes.forEach(([x0, y0, x1, y1], index) => {
      context.strokeStyle = COLORS[index % COLORS.length];
      context.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
      context.fillStyle = context.strokeStyle;
      context.font = `${Math.max(14, canvas.width / 30)}px sans-serif`;
      context.fillText(`person ${index + 1}`, Math.min(x0, x1) + 4, Math.min(y0, y1) + Math.max(14, canvas.width / 30));
    });
    this.status.textContent = this.boxes.length ? `${this.boxes.length} of 2 boxes drawn` :
      "Draw person 1's face, then person 2's (or leave it to face detection)";
  }
}
