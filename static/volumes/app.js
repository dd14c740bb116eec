/* Volumes dashboard: small progressive enhancements on top of htmx (dialogs, toasts, uploads,
   live lease state, typeahead, keyboard shortcuts). Everything works without it, only less smoothly. */
(function () {
  "use strict";

  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  function csrfToken() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"]; } catch (e) { return ""; }
  }

  // Toasts ------------------------------------------------------------------------------------
  function toast(message, level) {
    const box = $("#toasts");
    if (!box || !message) return;
    const el = document.createElement("div");
    el.className = "toast toast-" + (level || "info");
    el.setAttribute("role", level === "error" ? "alert" : "status");
    el.textContent = message;  // text, never HTML: messages can hold user-chosen names
    const close = document.createElement("button");
    close.type = "button"; close.className = "toast-close"; close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", () => el.remove());
    el.appendChild(close);
    box.appendChild(el);
    setTimeout(() => el.classList.add("fade"), level === "error" ? 9000 : 4500);
    setTimeout(() => el.remove(), level === "error" ? 9600 : 5100);
  }
  window.volumesToast = toast;

  function initServerToasts() {
    $$("#toasts .toast").forEach((el) => {
      const level = (el.className.match(/toast-(\w+)/) || [])[1];
      setTimeout(() => el.classList.add("fade"), level === "error" ? 9000 : 5000);
      setTimeout(() => el.remove(), level === "error" ? 9600 : 5600);
    });
  }

  // Dialogs -------------------------------------------------------------------------------------
  const modal = () => $("#modal");

  function openModal() {
    const dlg = modal();
    if (!dlg) return;
    if (!dlg.open) dlg.showModal();
    const focus = $("[autofocus]", dlg) || $("input:not([type=hidden]), select, textarea, button:not([data-close])", dlg);
    if (focus) focus.focus();
  }

  function closeModal() {
    const dlg = modal();
    if (dlg && dlg.open) dlg.close();
  }

  // Lease state: disable write actions while a job holds the volume --------------------------
  function applyLease() {
    const banner = $("#lease-banner");
    if (!banner) return;
    const leased = banner.dataset.leased === "1";
    const was = document.body.dataset.leased;
    document.body.dataset.leased = leased ? "1" : "0";
    $$("[data-write]").forEach((el) => {
      if (leased) el.setAttribute("aria-disabled", "true"); else el.removeAttribute("aria-disabled");
      el.title = leased ? "Disabled while the volume is in use" : (el.dataset.title || el.title);
      $$("input, button", el).concat(el.matches("button, input") ? [el] : []).forEach((c) => { c.disabled = leased; });
    });
    if (was === "1" && !leased && window.htmx) htmx.trigger(document.body, "files-refresh");
  }

  document.addEventListener("click", (e) => {
    const blocked = e.target.closest("[aria-disabled='true']");
    if (blocked) { e.preventDefault(); e.stopPropagation(); return; }
    if (e.target.closest("[data-close]")) { closeModal(); return; }
    const dismiss = e.target.closest("[data-dismiss]");
    if (dismiss) { dismiss.closest(".toast").remove(); return; }
    const dlg = modal();
    if (dlg && e.target === dlg) closeModal();  // a click on the backdrop
    const pick = e.target.closest("[data-pick]");
    if (pick) pickSuggestion(pick);
  }, true);

  // Uploads (multipart with progress; one generation per batch) ---------------------------------
  function upload(fileList) {
    const browser = $("#file-browser");
    const files = Array.from(fileList || []);
    if (!browser || !files.length) return;
    if (document.body.dataset.leased === "1") { toast("The volume is in use by a job; upload when it has finished.", "error"); return; }
    const max = parseInt(browser.dataset.maxFileSize || "0", 10);
    const tooBig = max ? files.filter((f) => f.size > max) : [];
    if (tooBig.length) {
      toast(tooBig[0].name + " is over the limit of " + max.toLocaleString() + " bytes per file; upload a smaller file.", "error");
      return;
    }
    const status = $("[data-upload-status]");  // outside the browser, which refreshes
    const bar = status && $(".progress-bar", status);
    const text = status && $("[data-upload-text]", status);
    const total = files.reduce((n, f) => n + f.size, 0) || 1;
    const label = files.length === 1 ? files[0].name : files.length + " files";
    if (status) { status.hidden = false; status.classList.remove("done", "failed"); }
    const setProgress = (pct, msg) => {
      if (bar) bar.style.width = pct + "%";
      if (status) $(".progress", status).setAttribute("aria-valuenow", String(Math.round(pct)));
      if (text) text.textContent = msg;
    };
    // Django accepts at most 100 files per request: send batches of 50, one generation each.
    const batches = [];
    for (let i = 0; i < files.length; i += 50) batches.push(files.slice(i, i + 50));
    let sent = 0;
    const messages = [];
    setProgress(0, "Uploading " + label + "…");

    function sendBatch(index) {
      const batch = batches[index];
      const form = new FormData();
      form.append("folder", browser.dataset.folder || "");
      batch.forEach((f) => { form.append("files", f, f.name); form.append("relpath", f.webkitRelativePath || f.name); });
      const batchSize = batch.reduce((n, f) => n + f.size, 0);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", browser.dataset.uploadUrl);
      xhr.setRequestHeader("X-CSRFToken", csrfToken());
      xhr.upload.addEventListener("progress", (e) => {
        const loaded = sent + (e.lengthComputable ? Math.min(e.loaded, batchSize) : 0);
        const pct = (100 * loaded) / total;
        setProgress(Math.min(pct, 99), "Uploading " + label + "… " + Math.round(pct) + "% of " + humanSize(total));
      });
      xhr.addEventListener("load", () => {
        let body = {};
        try { body = JSON.parse(xhr.responseText || "{}"); } catch (e) { body = {}; }
        if (xhr.status >= 200 && xhr.status < 300) {
          sent += batchSize;
          messages.push(body.message || "Uploaded.");
          htmx.trigger(document.body, "files-refresh");
          if (index + 1 < batches.length) { sendBatch(index + 1); return; }
          const msg = messages.length === 1 ? messages[0] : "Uploaded " + files.length + " files.";
          setProgress(100, msg);
          if (status) status.classList.add("done");
          setTimeout(() => { if (status) status.hidden = true; }, 2500);
        } else {
          let msg = body.detail;
          if (!msg) { try { msg = JSON.parse(xhr.getResponseHeader("HX-Trigger")).toast.message; } catch (e) { msg = null; } }
          fail(msg || "The upload failed (HTTP " + xhr.status + "). Try again.");
        }
      });
      xhr.addEventListener("error", () => fail("The upload failed: the server could not be reached. Check your connection and retry."));
      xhr.send(form);
    }
    function fail(msg) {
      setProgress(100, msg);
      if (status) status.classList.add("failed");
      toast(msg, "error");
    }
    sendBatch(0);
  }

  function humanSize(n) {
    const units = ["bytes", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  document.addEventListener("change", (e) => {
    if (e.target.matches("[data-upload-input]")) { upload(e.target.files); e.target.value = ""; }
    if (e.target.matches("#id_language")) swapExample(e.target);
    if (e.target.matches("[data-storage-form] select[name=kind]")) showKindFields(e.target.form);
  });

  let dragDepth = 0;
  const dropzone = (e) => { const z = e.target.closest && e.target.closest("[data-dropzone].can-drop"); return z; };
  document.addEventListener("dragenter", (e) => { const z = dropzone(e); if (z) { dragDepth++; z.classList.add("dragging"); e.preventDefault(); } });
  document.addEventListener("dragover", (e) => { if (dropzone(e)) e.preventDefault(); });
  document.addEventListener("dragleave", (e) => { const z = dropzone(e); if (z && --dragDepth <= 0) { dragDepth = 0; z.classList.remove("dragging"); } });
  document.addEventListener("drop", (e) => {
    const z = dropzone(e);
    if (!z) return;
    e.preventDefault(); dragDepth = 0; z.classList.remove("dragging");
    if (e.dataTransfer && e.dataTransfer.files.length) upload(e.dataTransfer.files);
  });

  // Share typeahead -------------------------------------------------------------------------------
  function pickSuggestion(btn) {
    const box = btn.closest(".typeahead");
    if (!box) return;
    $("[data-typeahead]", box).value = btn.dataset.label;
    $("[data-principal]", box).value = btn.dataset.pick;
    $(".suggestions", box).innerHTML = "";
    $("[data-typeahead]", box).setAttribute("aria-expanded", "false");
    const level = $("select[name=level]", box.closest("form"));
    if (level) level.focus();
  }

  document.addEventListener("input", (e) => {
    if (e.target.matches("[data-typeahead]")) {
      const hidden = $("[data-principal]", e.target.closest(".typeahead"));
      if (hidden) hidden.value = "";
    }
    if (e.target.matches("[data-confirm-name]")) checkConfirm(e.target);
  });

  function checkConfirm(input) {
    const btn = $("[data-confirm-button]", input.form);
    if (btn) btn.disabled = input.value !== input.dataset.confirmName;
  }

  // Keyboard ----------------------------------------------------------------------------------------
  document.addEventListener("keydown", (e) => {
    const typing = e.target.closest("input, textarea, select, [contenteditable]");
    if (e.key === "/" && !typing && !e.ctrlKey && !e.metaKey && !e.altKey) {
      const search = $("[data-search]");
      if (search) { e.preventDefault(); search.focus(); search.select(); }
    }
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && e.target.closest("#job-form")) {
      e.preventDefault(); e.target.closest("form").requestSubmit();
    }
    // Arrow keys move through typeahead suggestions; Escape closes them before the dialog.
    const box = e.target.closest && e.target.closest(".typeahead");
    if (box) {
      const options = $$(".suggestion", box);
      const i = options.indexOf(document.activeElement);
      if (e.key === "ArrowDown" && options.length) { e.preventDefault(); options[Math.min(i + 1, options.length - 1)].focus(); }
      if (e.key === "ArrowUp" && options.length) { e.preventDefault(); (i <= 0 ? $("[data-typeahead]", box) : options[i - 1]).focus(); }
      if (e.key === "Escape" && $(".suggestions", box).children.length) {
        e.preventDefault(); e.stopPropagation(); $(".suggestions", box).innerHTML = ""; $("[data-typeahead]", box).focus();
      }
    }
  }, true);

  // Job form: the example follows the language unless the script was edited ---------------------
  function swapExample(select) {
    const data = $("#job-examples");
    const area = $("#id_content");
    if (!data || !area) return;
    const examples = JSON.parse(data.textContent);
    const pristine = Object.values(examples).some((text) => text.trim() === area.value.trim()) || !area.value.trim();
    if (pristine && examples[select.value]) area.value = examples[select.value];
  }

  // Storage form: show the fields of the chosen kind --------------------------------------------
  function showKindFields(form) {
    if (!form) return;
    const kind = $("select[name=kind]", form).value;
    $$("[data-kinds]", form).forEach((input) => {
      const field = input.closest(".field");
      if (field) field.hidden = !input.dataset.kinds.split(" ").includes(kind);
    });
  }

  // htmx wiring ---------------------------------------------------------------------------------------
  function onLoad(root) {
    $$("[data-storage-form]", root).forEach(showKindFields);
    $$("[data-confirm-name]", root).forEach(checkConfirm);
    $$("[data-write]", root).forEach((el) => { if (!el.dataset.title) el.dataset.title = el.title || ""; });
    applyLease();
  }

  document.addEventListener("DOMContentLoaded", () => {
    initServerToasts();
    onLoad(document);
    const dlg = modal();
    if (dlg) dlg.addEventListener("close", () => { $("#modal-body").innerHTML = ""; });
    document.body.addEventListener("toast", (e) => toast(e.detail.message, e.detail.level));
    document.body.addEventListener("closeModal", closeModal);
    document.body.addEventListener("htmx:afterSwap", (e) => {
      if (e.detail.target && e.detail.target.id === "modal-body") openModal();
    });
    document.body.addEventListener("htmx:load", (e) => onLoad(e.detail.elt));
    document.body.addEventListener("htmx:beforeSwap", (e) => {
      const log = $("#job-log");
      if (log && e.detail.target && e.detail.target.id === "job-live") {
        document.body.dataset.logAtBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24 ? "1" : "0";
      }
    });
    document.body.addEventListener("htmx:afterSettle", (e) => {
      const log = $("#job-log");
      if (log && document.body.dataset.logAtBottom !== "0") log.scrollTop = log.scrollHeight;
      if (e.detail.target && e.detail.target.id === "share-suggestions") {
        const input = $("#share-who");
        if (input) input.setAttribute("aria-expanded", e.detail.target.children.length ? "true" : "false");
      }
    });
    document.body.addEventListener("htmx:responseError", (e) => {
      if (e.detail.xhr.getResponseHeader("HX-Trigger")) return;  // the server sent its own message
      toast("The server could not do that (HTTP " + e.detail.xhr.status + "). Reload the page and try again.", "error");
    });
    document.body.addEventListener("htmx:sendError", () => {
      toast("The server could not be reached. Check your connection; the page retries by itself.", "error");
    });
    const log = $("#job-log");
    if (log) log.scrollTop = log.scrollHeight;
  });
})();
