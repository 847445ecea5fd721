// The gateway's REST API from the page: the API key header, {error, code} errors, and
// server-sent events read through fetch (EventSource cannot send an Authorization header).

const KEY_STORAGE = "itk.apiKey";

export function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(value) {
  if (value) localStorage.setItem(KEY_STORAGE, value);
  else localStorage.removeItem(KEY_STORAGE);
}

export function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return new ApiError(response.status, body.error || response.statusText, body.code || "");
  } catch {
    return new ApiError(response.status, response.statusText, "");
  }
}

export async function request(method, path, options = {}) {
  const response = await fetch(path, { method, ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function getJson(path) {
  return (await request("GET", path)).json();
}

// POST /jobs as multipart with upload progress (fetch cannot report upload progress).
export function submitJob(form, onUpload, idempotencyKey) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/jobs");
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.setRequestHeader("Idempotency-Key", idempotencyKey);
    xhr.upload.onprogress = (e) => e.lengthComputable && onUpload(e.loaded / e.total);
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body.error || `HTTP ${xhr.status}`, body.code || ""));
    };
    xhr.onerror = () => reject(new ApiError(0, "the server could not be reached", ""));
    xhr.send(form);
  });
}

// Calls onEvent(kind, data) for each event until the job ends or `signal` aborts; reconnects
// after a dropped connection.
export async function followEvents(jobId, onEvent, signal) {
  while (!signal.aborted) {
    try {
      const response = await request("GET", `/jobs/${jobId}/events`, { signal });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let kind = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) kind = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).trim());
          }
          if (data.length) {
            onEvent(kind, JSON.parse(data.join("\n")));
            if (kind === "end") return;
          }
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status >= 400 && error.status < 500) throw error;
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}
