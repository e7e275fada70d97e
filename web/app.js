// zipvoice-server web player: plain browser JavaScript, no build step, no dependencies.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORAGE = "zipvoice.apiKey";
  const MODEL_STORAGE = "zipvoice.model";
  // OpenAI voice names: the server maps them to a configured voice (fallback when no voice list).
  const OPENAI_VOICES = ["alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage",
    "shimmer", "verse", "marin", "cedar"];
  const WARNING_TEXT = {
    silent: "the clip is (almost) silent",
    too_short: "the clip is too short",
    too_long: "the clip is long; it will be cut",
    clipping: "the clip is clipped (distorted)",
    noisy: "background noise is high",
    too_quiet: "the clip is very quiet",
    too_much_silence: "the clip has a lot of silence",
    low_dynamic_range: "low dynamic range",
    low_sample_rate: "low sample rate",
    transcript_mismatch: "the transcript does not match the audio",
  };
  const PCM_RATE = 24000;

  const state = {
    models: [],
    voices: [],
    voicesAvailable: true,
    abort: null,
    objectUrls: [],
    recorded: null, // Blob from the synth recorder
    regRecorded: null, // Blob from the register recorder
    captionWords: [], // {word, start, end, char_start, char_end} of the captioned speech
    currentWord: -1,
  };

  // ---------------------------------------------------------------- helpers
  function apiKey() {
    return $("api-key").value.trim();
  }

  async function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    const key = apiKey();
    if (key) headers.set("Authorization", `Bearer ${key}`);
    return fetch(path, { ...options, headers });
  }

  // The error envelope's message, else a readable fallback.
  async function errorMessage(resp) {
    let text = "";
    try {
      text = await resp.text();
      const body = JSON.parse(text);
      const err = body && body.error;
      if (err && err.message) {
        let msg = err.message;
        if (err.param) msg += ` (parameter: ${err.param})`;
        if (resp.status === 401) msg += "\nSet the API key at the top of the page.";
        return msg;
      }
      if (body && typeof body.detail === "string") return body.detail;
    } catch (_) {
      /* not JSON */
    }
    const status = `${resp.status} ${resp.statusText || ""}`.trim();
    return text && text.length < 300 ? `${status}: ${text}` : `Request failed: ${status}`;
  }

  function showError(el, message) {
    el.textContent = message;
    el.hidden = false;
  }

  function clearError(el) {
    el.textContent = "";
    el.hidden = true;
  }

  function trackUrl(url) {
    state.objectUrls.push(url);
    return url;
  }

  function revokeUrls() {
    for (const url of state.objectUrls.splice(0)) URL.revokeObjectURL(url);
  }

  function fmtSeconds(s) {
    return Number.isFinite(s) ? `${s.toFixed(1)} s` : "";
  }

  function blobToBase64(blob) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => {
        const url = String(reader.result);
        resolve(url.slice(url.indexOf(",") + 1));
      };
      reader.onerror = () => reject(reader.error || new Error("could not read the file"));
      reader.readAsDataURL(blob);
    });
  }

  function once(target, event) {
    return new Promise((resolve) => target.addEventListener(event, resolve, { once: true }));
  }

  // 16-bit little-endian PCM → a WAV blob the audio element can play.
  function pcmToWav(pcm, rate, channels) {
    const header = new DataView(new ArrayBuffer(44));
    const put = (off, s) => { for (let i = 0; i < s.length; i++) header.setUint8(off + i, s.charCodeAt(i)); };
    put(0, "RIFF");
    header.setUint32(4, 36 + pcm.byteLength, true);
    put(8, "WAVE");
    put(12, "fmt ");
    header.setUint32(16, 16, true);
    header.setUint16(20, 1, true);
    header.setUint16(22, channels, true);
    header.setUint32(24, rate, true);
    header.setUint32(28, rate * channels * 2, true);
    header.setUint16(32, channels * 2, true);
    header.setUint16(34, 16, true);
    put(36, "data");
    header.setUint32(40, pcm.byteLength, true);
    return new Blob([header.buffer, pcm], { type: "audio/wav" });
  }

  function currentModel() {
    return state.models.find((m) => m.id === $("model").value) || null;
  }

  function isCloning(model) {
    return !!model && String(model.backend || model.id).startsWith("zipvoice");
  }

  // ---------------------------------------------------------------- API key
  function initApiKey() {
    const input = $("api-key");
    try {
      input.value = localStorage.getItem(KEY_STORAGE) || "";
    } catch (_) {
      /* storage disabled */
    }
    input.addEventListener("change", () => {
      try {
        localStorage.setItem(KEY_STORAGE, input.value.trim());
      } catch (_) {
        /* storage disabled */
      }
      refreshAll();
    });
    $("api-key-clear").addEventListener("click", () => {
      input.value = "";
      try {
        localStorage.removeItem(KEY_STORAGE);
      } catch (_) {
        /* storage disabled */
      }
      refreshAll();
    });
  }

  // ---------------------------------------------------------------- models
  async function loadModels() {
    const select = $("model");
    const resp = await api("/v1/models");
    if (!resp.ok) throw new Error(`Could not list models: ${await errorMessage(resp)}`);
    const body = await resp.json();
    state.models = Array.isArray(body.data) ? body.data : [];
    const previous = select.value || safeGet(MODEL_STORAGE);
    select.replaceChildren();
    for (const m of state.models) {
      const opt = document.createElement("option");
      opt.value = m.id;
      const label = m.backend && m.backend !== m.id ? `${m.id} → ${m.backend}` : m.id;
      opt.textContent = m.available === false ? `${label} (unavailable)` : label;
      if (m.available === false) {
        opt.disabled = true;
        opt.title = m.unavailable_reason || "unavailable";
      } else if (m.description) {
        opt.title = m.description;
      }
      select.append(opt);
    }
    const usable = state.models.filter((m) => m.available !== false);
    const pick = usable.find((m) => m.id === previous) || usable.find((m) => m.id === "kokoro") || usable[0];
    if (pick) select.value = pick.id;
    onModelChange();
  }

  function safeGet(key) {
    try {
      return localStorage.getItem(key) || "";
    } catch (_) {
      return "";
    }
  }

  function onModelChange() {
    const model = currentModel();
    const cloning = isCloning(model);
    const hint = $("model-hint");
    const unavailable = state.models.filter((m) => m.available === false);
    const parts = [];
    if (model && model.description) parts.push(model.description);
    if (model && String(model.backend).startsWith("zipvoice_dialog")) {
      parts.push("Dialog: mark speaker turns with [S1] and [S2] in the text.");
    }
    hint.textContent = parts.join(" ");
    const box = $("model-unavailable");
    const list = $("model-unavailable-list");
    list.replaceChildren();
    for (const m of unavailable) {
      const li = document.createElement("li");
      const strong = document.createElement("strong");
      strong.textContent = m.id;
      li.append(strong, `: ${m.unavailable_reason || "unavailable"}`);
      list.append(li);
    }
    box.querySelector("summary").textContent =
      `${unavailable.length} model${unavailable.length === 1 ? "" : "s"} unavailable: why?`;
    box.hidden = unavailable.length === 0;
    for (const el of document.querySelectorAll("[data-clone]")) el.hidden = !cloning;
    $("voice-source-field").hidden = !cloning;
    if (!cloning) $("voice-source").value = "list";
    if (model) {
      try {
        localStorage.setItem(MODEL_STORAGE, model.id);
      } catch (_) {
        /* storage disabled */
      }
    }
    onSourceChange();
    renderVoiceSelect();
  }

  function onSourceChange() {
    const source = $("voice-source").value;
    for (const el of document.querySelectorAll("[data-source]")) el.hidden = el.dataset.source !== source;
  }

  // ---------------------------------------------------------------- voices
  async function loadVoices() {
    // The list is paged (limit/after/has_more, like OpenAI's list endpoints): follow the pages.
    const voices = [];
    let after = null;
    for (let page = 0; page < 50; page++) {
      const query = new URLSearchParams({ limit: "100" });
      if (after) query.set("after", after);
      const resp = await api(`/v1/audio/voices?${query}`);
      if (resp.status === 404 || resp.status === 405) {
        state.voices = [];
        state.voicesAvailable = false;
        renderVoiceSelect();
        renderVoiceTable();
        return;
      }
      if (!resp.ok) throw new Error(`Could not list voices: ${await errorMessage(resp)}`);
      const body = await resp.json();
      const data = Array.isArray(body.data) ? body.data : [];
      voices.push(...data);
      if (!body.has_more || !body.last_id || data.length === 0) break;
      after = body.last_id;
    }
    state.voices = voices;
    state.voicesAvailable = true;
    renderVoiceSelect();
    renderVoiceTable();
  }

  function renderVoiceSelect() {
    const select = $("voice");
    const previous = select.value;
    const model = currentModel();
    const cloning = isCloning(model);
    const backend = model ? model.backend : "";
    select.replaceChildren();
    const add = (value, label, parent = select) => {
      const opt = document.createElement("option");
      opt.value = value;
      opt.textContent = label;
      parent.append(opt);
      return opt;
    };
    const registered = state.voices.filter((v) => v.type === "registered");
    if (cloning) {
      if (!registered.length) {
        add("", "No registered voices: register one below or pick another source").disabled = true;
      }
      for (const v of registered) add(v.id, v.name || v.id);
    } else {
      const presets = state.voices.filter((v) => v.type === "preset" && (!v.backend || v.backend === backend));
      if (presets.length) {
        for (const v of presets) add(v.id, v.name && v.name !== v.id ? `${v.name} (${v.id})` : v.id);
      } else {
        const group = document.createElement("optgroup");
        group.label = "OpenAI names (mapped by the server)";
        select.append(group);
        for (const name of OPENAI_VOICES) add(name, name, group);
      }
    }
    const values = [...select.options].filter((o) => !o.disabled).map((o) => o.value);
    if (values.includes(previous)) select.value = previous;
  }

  function renderVoiceTable() {
    const body = $("voices-list");
    body.replaceChildren();
    const registered = state.voices.filter((v) => v.type === "registered");
    for (const v of registered) {
      const tr = document.createElement("tr");
      tr.dataset.voiceId = v.id;
      const name = document.createElement("td");
      name.textContent = v.name || "";
      const id = document.createElement("td");
      const code = document.createElement("code");
      code.textContent = v.id;
      id.append(code);
      const dur = document.createElement("td");
      dur.textContent = fmtSeconds(Number(v.duration));
      const quality = document.createElement("td");
      if (v.quality && typeof v.quality.score === "number") {
        quality.textContent = v.quality.score.toFixed(2);
        const warnings = (v.quality.warnings || []).map((w) => w.message || WARNING_TEXT[w.code] || w.code);
        if (warnings.length) {
          quality.textContent += " ⚠";
          quality.title = warnings.join("\n");
          const sr = document.createElement("span");
          sr.className = "sr-only";
          sr.textContent = ` warnings: ${warnings.join("; ")}`;
          quality.append(sr);
        }
      }
      const actions = document.createElement("td");
      const del = document.createElement("button");
      del.type = "button";
      del.className = "danger";
      del.textContent = "Delete";
      del.setAttribute("aria-label", `Delete voice ${v.name || v.id}`);
      del.addEventListener("click", () => deleteVoice(v, del));
      actions.append(del);
      tr.append(name, id, dur, quality, actions);
      body.append(tr);
    }
    const empty = $("voices-empty");
    empty.hidden = registered.length > 0;
    empty.textContent = state.voicesAvailable
      ? "No registered voices yet."
      : "This server does not offer voice management (GET /v1/audio/voices is missing).";
  }

  async function deleteVoice(voice, button) {
    clearError($("reg-error"));
    button.disabled = true;
    try {
      const resp = await api(`/v1/audio/voices/${encodeURIComponent(voice.id)}`, { method: "DELETE" });
      if (!resp.ok) throw new Error(await errorMessage(resp));
      $("reg-status").textContent = `Deleted voice “${voice.name || voice.id}”.`;
      await loadVoices();
      $("refresh-voices").focus();
    } catch (err) {
      button.disabled = false;
      showError($("reg-error"), `Could not delete the voice: ${err.message}`);
    }
  }

  function clipForRegistration() {
    const file = $("reg-file").files[0];
    if (file) return { blob: file, name: file.name };
    if (state.regRecorded) return { blob: state.regRecorded, name: `recording.${extFor(state.regRecorded.type)}` };
    return null;
  }

  function extFor(mime) {
    if (mime.includes("webm")) return "webm";
    if (mime.includes("ogg")) return "ogg";
    if (mime.includes("mp4")) return "m4a";
    return "wav";
  }

  async function registerVoice(event) {
    event.preventDefault();
    const err = $("reg-error");
    clearError(err);
    const name = $("reg-name").value.trim();
    const clip = clipForRegistration();
    if (!name) {
      showError(err, "Give the voice a name.");
      $("reg-name").focus();
      return;
    }
    if (!clip) {
      showError(err, "Choose a reference clip (or record one).");
      $("reg-file").focus();
      return;
    }
    const form = new FormData();
    form.append("name", name);
    form.append("file", clip.blob, clip.name);
    const transcript = $("reg-transcript").value.trim();
    if (transcript) form.append("transcript", transcript);
    const button = $("register");
    button.disabled = true;
    $("reg-status").textContent = "Registering…";
    try {
      const resp = await api("/v1/audio/voices", { method: "POST", body: form });
      if (!resp.ok) throw new Error(await errorMessage(resp));
      const voice = await resp.json();
      let msg = `Registered voice “${voice.name}” (${voice.id}).`;
      if (voice.quality && typeof voice.quality.score === "number") {
        msg += ` Quality ${voice.quality.score.toFixed(2)}.`;
        const w = (voice.quality.warnings || []).map((x) => x.message || WARNING_TEXT[x.code] || x.code);
        if (w.length) msg += ` Warnings: ${w.join("; ")}.`;
      }
      $("reg-status").textContent = msg;
      $("register-form").reset();
      state.regRecorded = null;
      $("reg-rec-preview").hidden = true;
      $("reg-rec-status").textContent = "";
      await loadVoices();
    } catch (e) {
      $("reg-status").textContent = "";
      showError(err, `Could not register the voice: ${e.message}`);
    } finally {
      button.disabled = false;
    }
  }

  async function analyzeClip() {
    const err = $("reg-error");
    clearError(err);
    const clip = clipForRegistration();
    if (!clip) {
      showError(err, "Choose a reference clip (or record one) to analyze.");
      return;
    }
    const form = new FormData();
    form.append("file", clip.blob, clip.name);
    const transcript = $("reg-transcript").value.trim();
    if (transcript) form.append("transcript", transcript);
    $("reg-status").textContent = "Analyzing…";
    try {
      const resp = await api("/v1/audio/analyze", { method: "POST", body: form });
      if (!resp.ok) throw new Error(await errorMessage(resp));
      const report = await resp.json();
      renderAnalysis(report);
      $("reg-status").textContent = "Analysis done.";
    } catch (e) {
      $("reg-status").textContent = "";
      showError(err, `Could not analyze the clip: ${e.message}`);
    }
  }

  function renderAnalysis(report) {
    const panel = $("analysis");
    panel.replaceChildren();
    const h = document.createElement("h3");
    h.textContent = "Clip analysis";
    const dl = document.createElement("dl");
    const row = (k, v) => {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      if (v instanceof Node) dd.append(v);
      else dd.textContent = v;
      dl.append(dt, dd);
    };
    if (typeof report.score === "number") row("Quality score", report.score.toFixed(2));
    if (typeof report.duration === "number") row("Length", fmtSeconds(report.duration));
    if (typeof report.snr_db === "number") row("SNR", `${report.snr_db.toFixed(1)} dB`);
    const warnings = report.warnings || [];
    row("Warnings", warnings.length ? warningList(warnings) : "none");
    if (report.transcript) row("Transcript", report.transcript);
    panel.append(h, dl);
    panel.hidden = false;
  }

  function warningList(warnings) {
    const ul = document.createElement("ul");
    ul.className = "warnings";
    for (const w of warnings) {
      const li = document.createElement("li");
      const code = typeof w === "string" ? w : w.code;
      li.textContent = (typeof w === "object" && w.message) || WARNING_TEXT[code] || code;
      li.dataset.code = code;
      ul.append(li);
    }
    return ul;
  }

  // ---------------------------------------------------------------- microphone
  function makeRecorder(button, status, preview, onBlob, idleLabel) {
    let recorder = null;
    let timer = null;
    button.addEventListener("click", async () => {
      if (recorder && recorder.state === "recording") {
        recorder.stop();
        return;
      }
      if (!navigator.mediaDevices || !window.MediaRecorder) {
        status.textContent = "Recording needs a browser with MediaRecorder on https:// or localhost.";
        return;
      }
      let stream;
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      } catch (e) {
        status.textContent = `Microphone unavailable: ${e.message || e.name}`;
        return;
      }
      const types = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/mp4", "audio/webm"];
      const mimeType = types.find((t) => MediaRecorder.isTypeSupported(t));
      recorder = new MediaRecorder(stream, mimeType ? { mimeType } : undefined);
      const parts = [];
      const started = Date.now();
      recorder.addEventListener("dataavailable", (e) => { if (e.data.size) parts.push(e.data); });
      recorder.addEventListener("stop", () => {
        clearInterval(timer);
        for (const t of stream.getTracks()) t.stop();
        const blob = new Blob(parts, { type: recorder.mimeType || mimeType || "audio/webm" });
        onBlob(blob);
        preview.src = trackUrl(URL.createObjectURL(blob));
        preview.hidden = false;
        status.textContent = `Recorded ${((Date.now() - started) / 1000).toFixed(1)} s.`;
        button.textContent = idleLabel;
        button.setAttribute("aria-pressed", "false");
      });
      recorder.start();
      button.textContent = "Stop recording";
      button.setAttribute("aria-pressed", "true");
      status.textContent = "Recording… speak now (stops by itself after 20 s).";
      timer = setInterval(() => {
        const s = (Date.now() - started) / 1000;
        if (s >= 20 && recorder.state === "recording") recorder.stop();
        else status.textContent = `Recording… ${s.toFixed(0)} s`;
      }, 500);
    });
  }

  // ---------------------------------------------------------------- synthesis
  async function voiceSpec(model) {
    const source = isCloning(model) ? $("voice-source").value : "list";
    if (source === "list") {
      const v = $("voice-custom").value.trim() || $("voice").value;
      if (!v) throw new Error("Pick a voice (or register one below).");
      return v;
    }
    if (source === "upload") {
      const file = $("voice-file").files[0];
      if (!file) throw new Error("Choose a reference clip to upload.");
      return `base64+${await blobToBase64(file)}`;
    }
    if (source === "record") {
      if (!state.recorded) throw new Error("Record a reference clip first.");
      return `base64+${await blobToBase64(state.recorded)}`;
    }
    if (source === "url") {
      const url = $("voice-url").value.trim();
      if (!url) throw new Error("Enter the URL of a reference clip.");
      return url.startsWith("url+") ? url : `url+${url}`;
    }
    const b64 = $("voice-b64").value.trim().replace(/\s+/g, "");
    if (!b64) throw new Error("Paste the reference clip as base64 or a data: URL.");
    return b64.startsWith("data:") || b64.startsWith("base64+") ? b64 : `base64+${b64}`;
  }

  function setPlayerSrc(url) {
    const player = $("player");
    player.pause();
    player.removeAttribute("src");
    player.src = url;
  }

  function showQuality(resp) {
    const panel = $("quality");
    const score = resp.headers.get("X-Voice-Quality-Score");
    const backend = resp.headers.get("X-Model-Backend") || "";
    if (score === null) {
      panel.hidden = true;
      return;
    }
    $("q-backend").textContent = backend;
    const value = Number(score);
    $("q-meter").value = Number.isFinite(value) ? value : 0;
    $("q-score").textContent = score;
    const codes = (resp.headers.get("X-Voice-Quality-Warnings") || "").split(",").map((s) => s.trim()).filter(Boolean);
    $("q-warnings").replaceChildren(codes.length ? warningList(codes) : document.createTextNode("none"));
    const raw = resp.headers.get("X-Prompt-Transcript");
    let transcript = "";
    if (raw !== null) {
      try {
        transcript = decodeURIComponent(raw);
      } catch (_) {
        transcript = raw;
      }
      const src = resp.headers.get("X-Prompt-Transcript-Source");
      if (src) transcript += src === "whisper" ? " (transcribed by Whisper)" : " (given)";
    }
    $("q-transcript").textContent = transcript || "—";
    panel.hidden = false;
  }

  function canStreamMp3() {
    return !!(window.MediaSource && MediaSource.isTypeSupported("audio/mpeg"));
  }

  // Appends the mp3 stream to a MediaSource while it arrives; returns all bytes.
  async function streamMp3(resp, signal) {
    const player = $("player");
    const ms = new MediaSource();
    setPlayerSrc(trackUrl(URL.createObjectURL(ms)));
    await once(ms, "sourceopen");
    const sb = ms.addSourceBuffer("audio/mpeg");
    const chunks = [];
    let mseOk = true;
    let started = false;
    const reader = resp.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        if (!mseOk) continue;
        try {
          if (sb.updating) await once(sb, "updateend");
          sb.appendBuffer(value);
          await once(sb, "updateend");
          if (!started) {
            started = true;
            $("status").textContent = "Playing while the rest arrives…";
            player.play().catch(() => {});
          }
        } catch (e) {
          mseOk = false; // e.g. quota exceeded: fall back to the whole blob at the end
        }
      }
    } finally {
      if (signal.aborted && ms.readyState === "open") ms.endOfStream();
    }
    const blob = new Blob(chunks, { type: "audio/mpeg" });
    if (mseOk && ms.readyState === "open") {
      if (sb.updating) await once(sb, "updateend");
      ms.endOfStream();
    } else if (!mseOk) {
      setPlayerSrc(trackUrl(URL.createObjectURL(blob)));
    }
    return blob;
  }

  // ---------------------------------------------------------------- captions
  function srtToVtt(srt) {
    const cues = srt.trim().split(/\n\s*\n/).map((block) => {
      const lines = block.split("\n");
      if (/^\d+$/.test(lines[0])) lines.shift();
      lines[0] = lines[0].replace(/,(\d{3})/g, ".$1");
      return lines.join("\n");
    });
    return `WEBVTT\n\n${cues.join("\n\n")}\n`;
  }

  function renderCaptions(words, srt) {
    const text = $("caption-text");
    const spans = words.map((w, i) => {
      const span = document.createElement("span");
      span.className = "word";
      span.textContent = w.word;
      span.dataset.index = String(i);
      span.dataset.start = String(w.start);
      span.dataset.end = String(w.end);
      return span;
    });
    const nodes = [];
    spans.forEach((span, i) => {
      if (i) nodes.push(document.createTextNode(" "));
      nodes.push(span);
    });
    text.replaceChildren(...nodes);
    state.captionWords = words;
    state.currentWord = -1;
    const srtLink = $("download-srt");
    srtLink.href = trackUrl(URL.createObjectURL(new Blob([srt], { type: "application/x-subrip" })));
    const vttLink = $("download-vtt");
    vttLink.href = trackUrl(URL.createObjectURL(new Blob([srtToVtt(srt)], { type: "text/vtt" })));
    $("caption-panel").hidden = false;
  }

  // the word being spoken at time t (the last one started; none in a pause before the first)
  function wordAt(t) {
    const words = state.captionWords || [];
    let lo = 0;
    let hi = words.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (words[mid].start <= t) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found >= 0 && t <= words[found].end + 0.05 ? found : -1;
  }

  function highlight() {
    const index = wordAt($("player").currentTime);
    if (index === state.currentWord) return;
    const spans = $("caption-text").children;
    if (state.currentWord >= 0 && spans[state.currentWord]) {
      spans[state.currentWord].classList.remove("current");
      spans[state.currentWord].removeAttribute("aria-current");
    }
    if (index >= 0 && spans[index]) {
      spans[index].classList.add("current");
      spans[index].setAttribute("aria-current", "true");
    }
    state.currentWord = index;
  }

  function followPlayback() {
    highlight();
    if (!$("player").paused) requestAnimationFrame(followPlayback);
  }

  async function synthesizeCaptioned(body, signal) {
    const resp = await api("/v1/audio/speech/captioned", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...body, captions: "srt" }),
      signal,
    });
    if (!resp.ok) throw new Error(await errorMessage(resp));
    showQuality(resp);
    const data = await resp.json();
    const bytes = Uint8Array.from(atob(data.audio), (c) => c.charCodeAt(0));
    renderCaptions(data.words, data.captions || "");
    return { resp, bytes };
  }

  async function synthesize(event) {
    event.preventDefault();
    const err = $("error");
    const status = $("status");
    clearError(err);
    const text = $("input").value;
    if (!text.trim()) {
      showError(err, "Enter some text to synthesize.");
      $("input").focus();
      return;
    }
    const model = currentModel();
    if (!model) {
      showError(err, "No model is available: check the server and the API key.");
      return;
    }
    const format = $("format").value;
    const body = {
      model: model.id,
      input: text,
      response_format: format,
      speed: Number($("speed").value),
      stream_format: "audio",
    };
    try {
      body.voice = await voiceSpec(model);
    } catch (e) {
      showError(err, e.message);
      return;
    }
    if (isCloning(model)) {
      const prompt = $("prompt-text").value.trim();
      if (prompt) body.prompt_text = prompt;
      if ($("num-steps").value) body.num_steps = Number($("num-steps").value);
      if ($("guidance").value) body.guidance_scale = Number($("guidance").value);
    }
    if ($("seed").value) body.seed = Number($("seed").value);

    const controller = new AbortController();
    state.abort = controller;
    $("synthesize").disabled = true;
    $("stop").disabled = false;
    $("download").hidden = true;
    $("player").dataset.state = "loading";
    revokeUrls();
    status.textContent = "Synthesizing…";
    const t0 = performance.now();
    $("caption-panel").hidden = true;
    state.captionWords = [];
    try {
      if ($("captions").checked) {
        const { resp, bytes } = await synthesizeCaptioned(body, controller.signal);
        const backend = resp.headers.get("X-Model-Backend") || model.backend;
        $("player").dataset.mode = "blob";
        const blob = new Blob([bytes], { type: format === "pcm" ? "audio/pcm" : resp.headers.get("Content-Type") });
        const playable = format === "pcm"
          ? pcmToWav(bytes.buffer, PCM_RATE, String(backend).endsWith("_stereo") ? 2 : 1)
          : new Blob([bytes]);
        setPlayerSrc(trackUrl(URL.createObjectURL(playable)));
        $("player").play().catch(() => {});
        const link = $("download");
        link.href = trackUrl(URL.createObjectURL(blob));
        link.download = `speech.${format}`;
        link.hidden = false;
        const secs = ((performance.now() - t0) / 1000).toFixed(1);
        status.textContent = `Done in ${secs} s (${backend}, ${state.captionWords.length} words timed).`;
        $("player").dataset.state = "done";
        return;
      }
      const resp = await api("/v1/audio/speech", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      if (!resp.ok) throw new Error(await errorMessage(resp));
      showQuality(resp);
      const backend = resp.headers.get("X-Model-Backend") || model.backend;
      let blob;
      if (format === "mp3" && $("stream").checked && resp.body && canStreamMp3()) {
        $("player").dataset.mode = "stream";
        blob = await streamMp3(resp, controller.signal);
      } else {
        $("player").dataset.mode = "blob";
        blob = await resp.blob();
        const playable = format === "pcm"
          ? pcmToWav(await blob.arrayBuffer(), PCM_RATE, String(backend).endsWith("_stereo") ? 2 : 1)
          : blob;
        setPlayerSrc(trackUrl(URL.createObjectURL(playable)));
        $("player").play().catch(() => {});
      }
      const link = $("download");
      link.href = trackUrl(URL.createObjectURL(blob));
      link.download = `speech.${format}`;
      link.hidden = false;
      const secs = ((performance.now() - t0) / 1000).toFixed(1);
      status.textContent = `Done in ${secs} s (${backend}, ${(blob.size / 1024).toFixed(0)} KiB).`;
      $("player").dataset.state = "done";
    } catch (e) {
      $("player").dataset.state = "error";
      if (e.name === "AbortError") {
        status.textContent = "Stopped.";
      } else {
        status.textContent = "";
        showError(err, e.message || String(e));
      }
    } finally {
      state.abort = null;
      $("synthesize").disabled = false;
      $("stop").disabled = true;
    }
  }

  // ---------------------------------------------------------------- start
  async function refreshAll() {
    const err = $("error");
    clearError(err);
    const problems = [];
    await loadModels().catch((e) => problems.push(e.message));
    await loadVoices().catch((e) => problems.push(e.message));
    if (problems.length) showError(err, problems.join("\n"));
    document.body.dataset.ready = "true";
  }

  function init() {
    initApiKey();
    $("model").addEventListener("change", onModelChange);
    $("voice-source").addEventListener("change", onSourceChange);
    $("speed").addEventListener("input", () => {
      $("speed-out").textContent = `${Number($("speed").value).toFixed(2)}×`;
    });
    $("speech-form").addEventListener("submit", synthesize);
    $("stop").addEventListener("click", () => {
      if (state.abort) state.abort.abort();
      $("player").pause();
    });
    $("player").addEventListener("play", followPlayback);
    $("player").addEventListener("timeupdate", highlight);
    $("player").addEventListener("seeked", highlight);
    $("register-form").addEventListener("submit", registerVoice);
    $("analyze").addEventListener("click", analyzeClip);
    $("refresh-voices").addEventListener("click", () => {
      clearError($("reg-error"));
      loadVoices().catch((e) => showError($("reg-error"), e.message));
    });
    $("reg-file").addEventListener("change", () => {
      if ($("reg-file").files.length) {
        state.regRecorded = null;
        $("reg-rec-preview").hidden = true;
      }
    });
    makeRecorder($("rec-button"), $("rec-status"), $("rec-preview"), (b) => { state.recorded = b; }, "Record again");
    makeRecorder($("reg-rec-button"), $("reg-rec-status"), $("reg-rec-preview"), (b) => {
      state.regRecorded = b;
      $("reg-file").value = "";
    }, "Record again");
    refreshAll();
  }

  init();
})();
